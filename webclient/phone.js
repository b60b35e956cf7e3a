// Phone number validation as typed: E.164 ("+14155550101") or a national
// number interpreted with a default country ("(415) 555-0101" with US +1).

export const COUNTRIES = [
  // code, label, calling code, trunk prefix, allowed national lengths
  { code: "US", label: "United States (+1)", cc: "1", trunk: "1", lengths: [10] },
  { code: "CA", label: "Canada (+1)", cc: "1", trunk: "1", lengths: [10] },
  { code: "GB", label: "United Kingdom (+44)", cc: "44", trunk: "0", lengths: [10] },
  { code: "IE", label: "Ireland (+353)", cc: "353", trunk: "0", lengths: [7, 8, 9] },
  { code: "FR", label: "France (+33)", cc: "33", trunk: "0", lengths: [9] },
  { code: "DE", label: "Germany (+49)", cc: "49", trunk: "0", lengths: [6, 7, 8, 9, 10, 11] },
  { code: "ES", label: "Spain (+34)", cc: "34", trunk: "", lengths: [9] },
  { code: "IT", label: "Italy (+39)", cc: "39", trunk: "", lengths: [6, 7, 8, 9, 10, 11] },
  { code: "NL", label: "Netherlands (+31)", cc: "31", trunk: "0", lengths: [9] },
  { code: "MX", label: "Mexico (+52)", cc: "52", trunk: "", lengths: [10] },
  { code: "AU", label: "Australia (+61)", cc: "61", trunk: "0", lengths: [9] },
  { code: "NZ", label: "New Zealand (+64)", cc: "64", trunk: "0", lengths: [8, 9, 10] },
  { code: "IN", label: "India (+91)", cc: "91", trunk: "0", lengths: [10] },
];

const ALLOWED = /^[\d\s().\-+/]*$/;

function nanpOk(national) {
  // NANP: area code and exchange both start with 2-9.
  return /^[2-9]\d{2}[2-9]\d{6}$/.test(national);
}

/**
 * @returns {{ok: true, e164: string} | {ok: false, empty?: boolean, error: string}}
 */
export function normalizePhone(input, countryCode = "US") {
  const raw = (input ?? "").trim();
  if (raw === "") return { ok: false, empty: true, error: "Enter a phone number." };
  if (!ALLOWED.test(raw)) {
    return { ok: false, error: "Use digits only (spaces, dashes and brackets are fine)." };
  }
  const digits = raw.replace(/\D/g, "");
  const international = raw.startsWith("+") || raw.startsWith("00");
  if (international) {
    const full = raw.startsWith("00") ? digits.slice(2) : digits;
    if (!/^[1-9]\d{7,14}$/.test(full)) {
      return { ok: false, error: "An international number is + then 8 to 15 digits." };
    }
    if (full.startsWith("1") && !nanpOk(full.slice(1))) {
      return { ok: false, error: "A +1 number has 10 digits after +1 (area code first)." };
    }
    return { ok: true, e164: `+${full}` };
  }
  const country = COUNTRIES.find((c) => c.code === countryCode) ?? COUNTRIES[0];
  let national = digits;
  if (country.trunk && national.startsWith(country.trunk) && !country.lengths.includes(national.length)) {
    national = national.slice(country.trunk.length);
  }
  if (!country.lengths.includes(national.length)) {
    const want = country.lengths.length === 1
      ? `${country.lengths[0]} digits`
      : `${country.lengths[0]} to ${country.lengths[country.lengths.length - 1]} digits`;
    return { ok: false, error: `A ${country.label.replace(/ \(.*/, "")} number has ${want}, or start with +.` };
  }
  if (country.cc === "1" && !nanpOk(national)) {
    return { ok: false, error: "That is not a valid North American number (check the area code)." };
  }
  return { ok: true, e164: `+${country.cc}${national}` };
}

/** "+14155550101" -> "+1 (415) 555-0101"; other numbers are shown as stored. */
export function formatPhone(e164) {
  const m = /^\+1(\d{3})(\d{3})(\d{4})$/.exec(e164 ?? "");
  if (m) return `+1 (${m[1]}) ${m[2]}-${m[3]}`;
  return e164 ?? "";
}
