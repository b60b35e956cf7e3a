// A picture in the compose box: picked with "Attach picture", previewed with a
// Remove button, uploaded to POST /api/media at once (so a refusal shows before
// Send), and sent by its id. Each conversation keeps its own, so a picture
// meant for one patient never follows staff to another. The server decides
// what a picture is, from its bytes; its words explain a refusal.
import { ApiError, explainApiError } from "./api.js";
import { $, el } from "./render.js";

/** The server's limit (5 MB as it counts them): a larger file is refused here, before any upload. */
export const MAX_PICTURE = 5 * 1024 * 1024;

function sizeText(bytes) {
  return bytes < 1024 * 1024 ? `${Math.max(1, Math.round(bytes / 1024))} KB` : `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

export class PictureAttachment {
  /** onChange() runs whenever the picture of the open conversation is picked, uploaded, refused or removed. */
  constructor({ api, store, onChange }) {
    this.api = api;
    this.store = store;
    this.onChange = onChange;
    this.byPhone = new Map(); // phone -> {file, preview (blob URL), upload (the server's answer) or null}

    $("compose-attach").addEventListener("click", () => $("compose-file").click());
    $("compose-file").addEventListener("change", () => {
      const file = $("compose-file").files?.[0];
      $("compose-file").value = "";
      if (file) this.pick(file);
    });
    $("compose-attachment-remove").addEventListener("click", () => {
      this.clear(this.store.current);
      $("compose-attach").focus();
    });
  }

  /** The open conversation's picture, or null. */
  get current() {
    return this.store.current ? this.byPhone.get(this.store.current) ?? null : null;
  }

  /** Still on its way to the server: Send waits. */
  get uploading() {
    return !!this.current && !this.current.upload;
  }

  /** The ids to send with the text (empty when there is no picture, or it is not uploaded yet). */
  get mediaIds() {
    const upload = this.current?.upload;
    return upload ? [upload.id] : [];
  }

  /** The message's media entry as the server records it, for the thread until the server's copy arrives. */
  get media() {
    const upload = this.current?.upload;
    return upload ? [{ id: upload.id, url: upload.url, contentType: upload.contentType }] : [];
  }

  async pick(file) {
    const phone = this.store.current;
    if (!phone) return;
    this.clear(phone, false);
    if (file.size > MAX_PICTURE) {
      this.refuse(`“${file.name}” is ${sizeText(file.size)}; a picture can be at most 5 MB.`);
      return;
    }
    this.showError("");
    const entry = { file, preview: URL.createObjectURL(file), upload: null };
    this.byPhone.set(phone, entry);
    this.render();
    try {
      const upload = await this.api.uploadMedia(file);
      if (this.byPhone.get(phone) !== entry) return; // removed, or replaced, meanwhile
      entry.upload = upload;
    } catch (err) {
      if (this.byPhone.get(phone) !== entry) return;
      this.clear(phone, false);
      if (this.store.current !== phone) return;
      const theirs = err instanceof ApiError && err.status >= 400;
      this.refuse(`“${file.name}” was not attached. ${theirs ? err.message : explainApiError(err)}`);
      return;
    }
    if (this.store.current === phone) this.render();
  }

  /** Forget a conversation's picture (sent, removed or refused). */
  clear(phone, render = true) {
    const entry = phone ? this.byPhone.get(phone) : null;
    if (entry) URL.revokeObjectURL(entry.preview);
    if (phone) this.byPhone.delete(phone);
    if (render) this.render();
  }

  /** Every conversation's picture goes (signed out, or another desk, whose uploads these are not). */
  reset() {
    for (const entry of this.byPhone.values()) URL.revokeObjectURL(entry.preview);
    this.byPhone.clear();
    this.render();
  }

  refuse(text) {
    this.render();
    this.showError(text);
    $("compose-attach").focus();
  }

  showError(text) {
    const err = $("compose-error");
    if (text || err.dataset.kind === "picture") {
      err.textContent = text;
      err.dataset.kind = text ? "picture" : "";
    }
  }

  /** Show the open conversation's picture (or none); `hidden` while writing an internal note, which has none. */
  render(hidden = $("compose").classList.contains("note-mode")) {
    const entry = this.current;
    const box = $("compose-attachment");
    box.hidden = !entry || hidden;
    const shown = $("compose-thumb");
    if (entry) {
      // Made only for a picture: with none, the compose box holds no <img> at all.
      if (shown?.getAttribute("src") !== entry.preview) {
        const thumb = el("img", { id: "compose-thumb", class: "compose-thumb", alt: "The picture to send", src: entry.preview });
        if (shown) shown.replaceWith(thumb);
        else box.prepend(thumb);
      }
      const state = entry.upload ? "ready to send" : "uploading…";
      $("compose-attachment-text").textContent = `${entry.file.name} · ${sizeText(entry.file.size)} · ${state}`;
    } else {
      shown?.remove();
      $("compose-attachment-text").textContent = "";
    }
    this.onChange();
  }
}
