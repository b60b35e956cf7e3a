// Handing the open conversation to another desk: the Transfer dialog (a desk
// that is live now, an optional note for it) and the call that moves it.
import { explainApiError } from "./api.js";
import { onlineText } from "./desks.js";
import { formatPhone } from "./phone.js";
import { $, el } from "./render.js";

export const MAX_NOTE = 500;

export class TransferDialog {
  /** desks: the clinic's desk list (refreshed when the dialog opens). */
  constructor({ api, store, desks }) {
    this.api = api;
    this.store = store;
    this.desks = desks;
    this.phone = null;
    this.busy = false;

    $("transfer-btn").addEventListener("click", () => this.open());
    $("transfer-cancel").addEventListener("click", () => $("transfer-dialog").close());
    $("transfer-note").addEventListener("input", () => this.update());
    $("transfer-desk").addEventListener("change", () => this.update());
    $("transfer-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.submit();
    });
    $("transfer-dialog").addEventListener("close", () => {
      if (this.store.current !== this.phone) return;
      // After a transfer the button is gone: the conversation's title is the next best place.
      ($("transfer-btn").hidden ? $("conv-title") : $("transfer-btn")).focus();
    });
  }

  async open() {
    const phone = this.store.current;
    if (!phone) return;
    this.phone = phone;
    $("transfer-form").reset();
    $("transfer-error").textContent = "";
    $("transfer-what").textContent = formatPhone(phone);
    this.fill(this.desks.others());
    this.update();
    $("transfer-dialog").showModal();
    $("transfer-desk").focus();
    try {
      this.fill(await this.desks.refresh());
    } catch (err) {
      if (!this.desks.others().length) $("transfer-error").textContent = explainApiError(err);
    }
    this.update();
  }

  /** The other live desks, keeping the one already chosen. */
  fill(all) {
    const mine = this.store.session?.webAppId;
    const others = (all ?? []).filter((d) => d.id !== mine);
    const select = $("transfer-desk");
    const chosen = select.value;
    select.replaceChildren(...others.map((d) => el("option", { value: d.id, text: `${d.name} · ${onlineText(d)}` })));
    if (others.some((d) => d.id === chosen)) select.value = chosen;
    $("transfer-none").hidden = others.length > 0;
  }

  update() {
    const note = $("transfer-note").value;
    const n = [...note].length;
    const counter = $("transfer-count");
    counter.textContent = `${n} / ${MAX_NOTE}`;
    counter.classList.toggle("over", n > MAX_NOTE);
    $("transfer-submit").disabled = this.busy || !$("transfer-desk").value || n > MAX_NOTE;
  }

  async submit() {
    const phone = this.phone;
    const desk = $("transfer-desk").value;
    const note = $("transfer-note").value.trim();
    if (!phone || !desk || this.busy || [...note].length > MAX_NOTE) return;
    this.busy = true;
    this.update();
    $("transfer-submit").textContent = "Transferring…";
    $("transfer-error").textContent = "";
    try {
      const res = await this.api.transfer(phone, desk, note);
      this.store.setOwner(phone, res?.owner ?? null);
      $("transfer-dialog").close();
      // The line ("Now with Billing (Maria)") arrives on both desks' owner topics.
    } catch (err) {
      $("transfer-error").textContent = explainApiError(err);
      $("transfer-desk").focus();
    } finally {
      this.busy = false;
      $("transfer-submit").textContent = "Transfer";
      this.update();
    }
  }
}
