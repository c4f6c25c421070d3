// Content script, on the sites the user allowed (options page): tel: and callto: links become click-to-call
// through Hej CTI (call.dial from the user's own sipgate device). Nothing else on the page is read or changed.
(() => {
  if (globalThis.__hejctiTel) return;
  globalThis.__hejctiTel = true;
  const LINK = /^(tel|callto):/i;

  function numberOf(href) {
    try {
      return decodeURIComponent(href.replace(LINK, "").replace(/^\/\//, "")).split(/[;?]/)[0].trim();
    } catch {
      return "";
    }
  }

  function mark(root) {
    for (const a of root.querySelectorAll?.('a[href^="tel:" i], a[href^="callto:" i]') || []) {
      if (a.dataset.hejcti) continue;
      a.dataset.hejcti = "1";
      a.title = chrome.i18n.getMessage("telTitle", [numberOf(a.getAttribute("href"))]);
    }
  }

  document.addEventListener("click", (event) => {
    const a = event.target instanceof Element ? event.target.closest("a[href]") : null;
    if (!a || !LINK.test(a.getAttribute("href"))) return;
    const to = numberOf(a.getAttribute("href"));
    if (!to) return;
    event.preventDefault();
    chrome.runtime.sendMessage({ intent: "dial", to });
  }, true);

  mark(document);
  new MutationObserver((changes) => {
    for (const change of changes) for (const node of change.addedNodes) if (node.nodeType === 1) mark(node.parentNode || node);
  }).observe(document.documentElement, { childList: true, subtree: true });
})();
