// Sign-in: to Hej CTI (with sipgate through chrome.identity.launchWebAuthFlow, CONTRACT §8, or a pasted user
// token) and to the account's CRM (OAuth through the server's /crm/oauth/{kind}/start|callback|refresh,
// CONTRACT §10; name and password against a SugarCRM or SuiteCRM instance). Tokens go to storage.js only.

import { CRMS, CrmSignInError, passwordRefresh, passwordSignIn, tokensFrom } from "./crm.js";

export function serverBase(server) {
  const url = new URL(server);
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new Error("server must be http(s)");
  return url.origin + url.pathname.replace(/\/+$/, "");
}

/** The parameters of a redirect's fragment (`https://<id>.chromiumapp.org/x#token=…`). */
export function fragmentParams(url) {
  return new URLSearchParams(new URL(url).hash.slice(1));
}

function randomState() {
  const bytes = crypto.getRandomValues(new Uint8Array(18));
  return btoa(String.fromCharCode(...bytes)).replace(/[+/=]/g, (c) => ({ "+": "-", "/": "_", "=": "" })[c]);
}

async function webAuthFlow(url) {
  try {
    return await chrome.identity.launchWebAuthFlow({ url, interactive: true });
  } catch (e) {
    throw new CrmSignInError("refused", e?.message || String(e));
  }
}

/** "Sign in with sipgate": the server hands the extension a Hej CTI user token in the fragment. */
export async function signInWithSipgate(server) {
  const redirect = chrome.identity.getRedirectURL("hejcti");
  const url = `${serverBase(server)}/auth/sipgate?for=extension&redirect_uri=${encodeURIComponent(redirect)}`;
  const token = fragmentParams(await webAuthFlow(url)).get("token");
  if (!token) throw new CrmSignInError("refused", "no token in the answer");
  return token;
}

/** A token pasted by the user (from `hejcti user add` or the portal): trimmed, no spaces inside. */
export function pastedToken(value) {
  const token = String(value || "").trim();
  if (!token || /\s/.test(token) || token.length > 512) return null;
  return token;
}

async function oauthSignIn(server, crm) {
  const state = randomState();
  const params = new URLSearchParams({ redirect_uri: chrome.identity.getRedirectURL("crm"), state });
  if (crm.kind === "zendesk") params.set("subdomain", crm.subdomain || "");
  const result = fragmentParams(await webAuthFlow(`${serverBase(server)}/crm/oauth/${crm.kind}/start?${params}`));
  if (result.get("state") !== state) throw new CrmSignInError("refused", "state mismatch");
  if (result.get("error")) throw new CrmSignInError("refused", result.get("error"));
  if (!result.get("access_token")) throw new CrmSignInError("refused", "no access token in the answer");
  return tokensFrom(crm.kind, Object.fromEntries(result));
}

/** The server's refresh wants the user's Hej CTI token too: a CRM refresh token alone cannot use its client
 * secret. A 401 is about that token (the session says "signed out" then), not the CRM's: the CRM's tokens stay. */
async function oauthRefresh(server, crm, tokens, userToken) {
  const body = { refresh_token: tokens.refresh_token };
  if (crm.kind === "zendesk") body.subdomain = crm.subdomain || "";
  let response;
  try {
    response = await fetch(`${serverBase(server)}/crm/oauth/${crm.kind}/refresh`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${userToken || ""}` },
      body: JSON.stringify(body),
    });
  } catch (e) {
    throw new CrmSignInError("unreachable", String(e));
  }
  const answer = await response.json().catch(() => ({}));
  if (response.status === 400) throw new CrmSignInError("refused", answer.error || "refused");
  if (response.status === 401) throw new CrmSignInError("signed_out", answer.error || "unauthorized");
  if (!response.ok || !answer.access_token) throw new CrmSignInError("unreachable", `HTTP ${response.status}`);
  return tokensFrom(crm.kind, answer, tokens);
}

/** A new sign-in to the CRM: OAuth (a window of the CRM's own sign-in) or name and password. */
export async function crmSignIn(server, crm, login = {}) {
  const how = CRMS[crm?.kind]?.signIn;
  if (how === "oauth") return oauthSignIn(server, crm);
  if (how === "password") return passwordSignIn(crm, login.username, login.password);
  throw new CrmSignInError("setup", "this CRM needs no sign-in");
}

/** A new access token from the refresh token, without the user; CrmSignInError("refused") when only a new
 * sign-in helps, ("signed_out") when the server refused the Hej CTI token. `userToken`: the Hej CTI token,
 * which the server's OAuth refresh requires. */
export async function crmRefresh(server, crm, tokens, userToken) {
  if (!tokens?.refresh_token) throw new CrmSignInError("refused", "no refresh token");
  if (CRMS[crm.kind]?.signIn === "password") return passwordRefresh(crm, tokens);
  return oauthRefresh(server, crm, tokens, userToken);
}
