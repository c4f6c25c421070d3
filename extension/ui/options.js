// The options page: the server and the Hej CTI sign-in, the CRM and its sign-in, the sites whose tel: links
// become click-to-call. Host access is asked for here, when the user sets a server, an instance or a site.

import { localize, t } from "../i18n.js";
import { askHosts, connect, wireSignIn, originPattern, showNotice } from "./common.js";

localize();
const $ = (id) => document.getElementById(id);
let filled = false;
const send = connect(render);

function crmFromForm() {
  const kind = $("crm-kind").value;
  if (!kind) return null;
  const crm = { kind };
  if (kind === "zendesk") crm.subdomain = $("crm-subdomain").value.trim().toLowerCase();
  if (kind === "sugarcrm" || kind === "suitecrm") crm.url = $("crm-url").value.trim();
  if (kind === "sugarcrm") crm.platform = $("crm-platform").value.trim() || "hejcti";
  if (kind === "suitecrm") Object.assign(crm, { clientId: $("crm-client-id").value.trim(), clientSecret: $("crm-client-secret").value });
  return crm;
}

function showFields() {
  const kind = $("crm-kind").value;
  for (const div of document.querySelectorAll("[data-for]")) {
    const f = div.dataset.for;
    div.hidden = !(f === kind || (f === "subdomain" && kind === "zendesk") || (f === "url" && (kind === "sugarcrm" || kind === "suitecrm")));
  }
}

$("crm-kind").addEventListener("change", showFields);
wireSignIn(send);
$("crm-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const crm = crmFromForm();
  if (crm?.url && !(await askHosts([originPattern(crm.url)]))) {
    showNotice($("notice"), { key: "hostDenied", kind: "error" });
    return;
  }
  send({ intent: "saveCrm", crm });
});
$("crm-signin").addEventListener("click", () => send({ intent: "crmSignIn" }));
$("crm-password").addEventListener("submit", (event) => {
  event.preventDefault();
  send({ intent: "crmSignIn", login: { username: $("crm-user").value, password: $("crm-pass").value } });
  $("crm-pass").value = "";
});
$("crm-signout").addEventListener("click", () => send({ intent: "crmSignOut" }));
$("tel-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const sites = [...new Set($("tel-sites").value.split(/\s+/).map(originPattern).filter(Boolean))];
  await askHosts(sites);
  send({ intent: "telSites", sites });
});

function render(state) {
  const signedIn = state.status !== "signed_out";
  $("who").textContent = state.me?.name ? `${state.me.name} · ${t(`status_${state.status}`)}` : t(`status_${state.status}`);
  $("who").dataset.status = state.status;
  $("signin-form").hidden = signedIn;
  showNotice($("notice"), state.notice);
  $("signout").hidden = !signedIn;
  if (!filled) {
    filled = true;
    $("server").value = state.server || "";
    $("crm-kind").value = state.crm?.kind || "";
    $("crm-subdomain").value = state.crm?.subdomain || "";
    $("crm-url").value = state.crm?.url || "";
    $("crm-platform").value = state.crm?.platform || "hejcti";
    $("crm-client-id").value = state.crm?.clientId || "";
    // the secret is not shown again; left empty, the stored one stays
    $("crm-client-secret").placeholder = state.crm?.hasClientSecret ? t("secretKept") : "";
    $("tel-sites").value = (state.telSites || []).map((s) => s.replace(/\/\*$/, "")).join("\n");
    showFields();
  }
  const crm = state.crm;
  $("crm-state").textContent = crm ? t(`crmState_${crm.state}`, crm.label || crm.kind) : t("crmState_unset");
  $("crm-oauth").hidden = !(crm?.signIn === "oauth" && crm.state !== "signed_in");
  $("crm-password").hidden = !(crm?.signIn === "password" && crm.state !== "signed_in");
  $("crm-signout").hidden = crm?.state !== "signed_in";
}
