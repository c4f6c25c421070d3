// What the extension knows of each CRM: how a user signs in to it, and, for SugarCRM and SuiteCRM, the
// instance's own token endpoint (name and password; the token is refreshed there too). The OAuth CRMs sign
// in and refresh through the Hej CTI server, which holds the client secret and stores nothing (auth.js).

export const CRMS = {
  salesforce: { label: "Salesforce", signIn: "oauth" },
  hubspot: { label: "HubSpot", signIn: "oauth" },
  pipedrive: { label: "Pipedrive", signIn: "oauth" },
  zendesk: { label: "Zendesk", signIn: "oauth", needs: "subdomain" },
  sugarcrm: { label: "SugarCRM", signIn: "password", needs: "url" },
  suitecrm: { label: "SuiteCRM", signIn: "password", needs: "url" },
  directory: { label: "CSV", signIn: "none" },
};

export const REFRESH_MARGIN_MS = 60000;

export class CrmSignInError extends Error {
  /** kind: "refused" (the CRM said no: wrong password, dead refresh token), "unreachable", "setup",
   * "signed_out" (the Hej CTI server refused the user's own token: a 401 of its OAuth refresh). */
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

/** The instance's origin for a host permission (`https://acme.sugarondemand.com/*`), or null. */
export function instanceOrigin(crm) {
  const info = CRMS[crm?.kind];
  if (!info) return null;
  try {
    if (info.needs === "url") return new URL(crm.url).origin + "/*";
  } catch {
    return null;
  }
  return null;
}

/** Tokens as the extension keeps them, from a token endpoint's answer. */
export function tokensFrom(kind, answer, previous = {}) {
  const expiresIn = Number(answer.expires_in);
  return {
    kind,
    access_token: answer.access_token,
    // Zendesk, SugarCRM and SuiteCRM rotate refresh tokens; HubSpot and Salesforce may not send one again
    refresh_token: answer.refresh_token || previous.refresh_token || null,
    expires_at: Number.isFinite(expiresIn) && expiresIn > 0 ? Date.now() + expiresIn * 1000 : null,
    instance_url: answer.instance_url || answer.api_domain || previous.instance_url || null,
  };
}

/** `fn` made single-flight: a call while one is running gets that one's promise instead of a second run.
 * For the CRM's refresh: a refresh on reconnect and a `crm.credentials_required` meanwhile must be one
 * refresh, since a CRM that rotates refresh tokens refuses the second and signs the user out of it. */
export function singleFlight(fn) {
  let running = null;
  return (...args) => {
    running ??= Promise.resolve().then(() => fn(...args)).finally(() => {
      running = null;
    });
    return running;
  };
}

export function needsRefresh(tokens, now = Date.now()) {
  return tokens.expires_at !== null && tokens.expires_at - REFRESH_MARGIN_MS <= now;
}

function base(url) {
  return String(url || "").replace(/\/+$/, "");
}

/** The password and refresh grants of SugarCRM (`/rest/v11/oauth2/token`, JSON) and SuiteCRM V8
 * (`/Api/access_token`, form-encoded, a "Password Client" of the instance). */
function passwordGrant(crm, fields) {
  if (crm.kind === "sugarcrm") {
    return {
      url: `${base(crm.url)}/rest/v11/oauth2/token`,
      init: {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ client_id: "sugar", client_secret: "", platform: crm.platform || "hejcti", ...fields }),
      },
    };
  }
  const form = new URLSearchParams({ client_id: crm.clientId || "", client_secret: crm.clientSecret || "", ...fields });
  return {
    url: `${base(crm.url)}/Api/access_token`,
    init: { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: form },
  };
}

async function tokenRequest(crm, fields, previous) {
  const { url, init } = passwordGrant(crm, fields);
  let response;
  try {
    response = await fetch(url, init);
  } catch (e) {
    throw new CrmSignInError("unreachable", String(e));
  }
  const answer = await response.json().catch(() => ({}));
  if (response.status === 400 || response.status === 401) {
    throw new CrmSignInError("refused", answer.error_description || answer.error_message || answer.error || "refused");
  }
  if (!response.ok || !answer.access_token) throw new CrmSignInError("unreachable", `HTTP ${response.status}`);
  return tokensFrom(crm.kind, { ...answer, instance_url: base(crm.url) }, previous);
}

/** SugarCRM/SuiteCRM: name and password against the instance. The password is not kept. */
export function passwordSignIn(crm, username, password) {
  return tokenRequest(crm, { grant_type: "password", username, password });
}

export function passwordRefresh(crm, tokens) {
  return tokenRequest(crm, { grant_type: "refresh_token", refresh_token: tokens.refresh_token }, tokens);
}
