// Building the page: every element is made with the DOM API and every text set with
// textContent, so no value from the API is ever parsed as HTML.

/** An element `tag` with `attrs` (`on*` functions become listeners) and `children`. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces `el`'s content with `children`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A table with a caption, column headings and rows of cells, in a region that scrolls
 * sideways on a narrow screen (focusable, so the keyboard can scroll it). */
export function table(caption, headings, rows) {
  const head = h("tr", {}, headings.map((t) => h("th", { scope: "col" }, t)));
  const body = rows.length
    ? rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c))))
    : [h("tr", {}, h("td", { colspan: headings.length }, "None."))];
  return h("div", { class: "scroll", tabindex: 0, role: "region", "aria-label": caption },
    h("table", {}, h("caption", {}, caption), h("thead", {}, head), h("tbody", {}, body)));
}

/** A labelled form control. */
export function field(label, control) {
  return h("label", {}, label, control);
}

/** An error shown in the page, as an alert. */
export function errorBox(err) {
  return h("div", { class: "error", role: "alert" }, err && err.message ? err.message : String(err));
}

/** A definition list of `[term, value]` pairs. */
export function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.map(([t, d]) => [h("dt", {}, t), h("dd", {}, d ?? "—")]));
}

/** An instance's tags as chips. */
export function tags(map) {
  const entries = Object.entries(map || {});
  return entries.length ? entries.map(([k, v]) => h("span", { class: "tag" }, `${k}=${v}`)) : "—";
}
