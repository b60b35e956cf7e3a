// SMS segment counter: GSM-7 (with the extension table) or UCS-2.
// GSM-7: 160 septets in one SMS, 153 per part when concatenated; extension
// characters cost two septets (escape + char). UCS-2: 70 UTF-16 code units in
// one SMS, 67 per part. Anything outside the GSM-7 sets (an emoji, say)
// switches the whole message to UCS-2.

export const MAX_CHARS = 1600; // the API refuses longer bodies (code points)

const GSM_BASIC =
  "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
  "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM_EXTENSION = "^{}\\[~]|€\f";

const basic = new Set(GSM_BASIC);
const extension = new Set(GSM_EXTENSION);

export function countSegments(text) {
  const value = text ?? "";
  const codePoints = [...value];
  const chars = codePoints.length;
  let septets = 0;
  let gsm = true;
  for (const ch of codePoints) {
    if (basic.has(ch)) septets += 1;
    else if (extension.has(ch)) septets += 2;
    else {
      gsm = false;
      break;
    }
  }
  let encoding;
  let units;
  let segments;
  if (gsm) {
    encoding = "GSM-7";
    units = septets;
    segments = units === 0 ? 0 : units <= 160 ? 1 : Math.ceil(units / 153);
  } else {
    encoding = "UCS-2";
    units = value.length; // UTF-16 code units
    segments = units <= 70 ? 1 : Math.ceil(units / 67);
  }
  return { chars, units, encoding, segments, tooLong: chars > MAX_CHARS };
}

export function describeSegments(text) {
  const c = countSegments(text);
  return `${c.chars} chars · ${c.segments} SMS (${c.encoding})`;
}
