// German and English through chrome.i18n (_locales/de, _locales/en): the browser's language picks.

export function t(key, ...subs) {
  return chrome.i18n.getMessage(key, subs.map(String)) || key;
}

/** Fill every [data-i18n] element's text, [data-i18n-label] its aria-label, [data-i18n-placeholder] its
 * placeholder, [data-i18n-title] its title. */
export function localize(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
  // the language of the messages shown: each _locales file names its own, so a browser in French, which gets
  // the English messages, says "en" (chrome.i18n.getMessage("@@ui_locale") would say "fr")
  document.documentElement.lang = t("htmlLang") === "htmlLang" ? "en" : t("htmlLang");
}
