// Texting a patient whose conversation is with another desk: the API refuses
// (409 owned_by_other_desk) until the person says, here in the page, that
// this desk takes the conversation over; then the text goes again with takeOver.
import { ApiError, firstSentence } from "./api.js";
import { $, el } from "./render.js";

function question(err, deskName) {
  const owner = err.details?.owner?.name;
  const where = owner ? `This patient's conversation is with ${owner}.` : firstSentence(err.message);
  const moved = deskName ? ` Both desks will see that it moved to ${deskName}.` : " Both desks will see that it moved.";
  return `${where} Take over the conversation?${moved}`;
}

/** The question's text and its two answers, made the first time the box `id` is used. */
function promptBox(id) {
  const box = $(id);
  if (!box.firstChild) {
    box.append(
      el("p", { class: "takeover-text", role: "alert" }),
      el("div", { class: "takeover-actions" },
        el("button", { type: "button", class: "secondary", "data-answer": "no", text: "Cancel" }),
        el("button", { type: "button", class: "primary", "data-answer": "yes", text: "Take over and send" }),
      ),
    );
  }
  return box;
}

/**
 * Show the prompt box `id` and resolve true for "take over", false for "cancel"
 * or Escape. Focus goes back to `returnFocus` afterwards.
 */
export function askTakeOver(id, text, returnFocus) {
  cancelTakeOver(id);
  const box = promptBox(id);
  box.querySelector(".takeover-text").textContent = text;
  box.hidden = false;
  box.querySelector('[data-answer="yes"]').focus();
  return new Promise((resolve) => {
    const done = (answer) => {
      pending.delete(id);
      box.removeEventListener("click", onClick);
      box.removeEventListener("keydown", onKey);
      const hadFocus = box.contains(document.activeElement);
      box.hidden = true;
      if (hadFocus) returnFocus?.focus({ preventScroll: true });
      resolve(answer);
    };
    const onClick = (ev) => {
      const answer = ev.target.closest("[data-answer]")?.dataset.answer;
      if (answer) done(answer === "yes");
    };
    const onKey = (ev) => {
      if (ev.key !== "Escape") return;
      ev.preventDefault(); // inside a <dialog>: cancel the question, not the dialog
      ev.stopPropagation();
      done(false);
    };
    box.addEventListener("click", onClick);
    box.addEventListener("keydown", onKey);
    pending.set(id, () => done(false));
  });
}

const pending = new Map(); // prompt id -> answer "no" to it

/** Answer an open question "no" (its conversation or dialog was left). */
export function cancelTakeOver(id) {
  pending.get(id)?.();
}

/**
 * send(takeOver) posts the text; when another desk has the patient, ask and,
 * on yes, send again taking the conversation over. Resolves to the API's answer,
 * or null when the person chose to leave the conversation where it is.
 */
export async function sendOrTakeOver(send, { promptId, deskName, returnFocus }) {
  try {
    return await send(false);
  } catch (err) {
    if (!(err instanceof ApiError) || err.code !== "owned_by_other_desk") throw err;
    if (!(await askTakeOver(promptId, question(err, deskName), returnFocus))) return null;
    return send(true);
  }
}
