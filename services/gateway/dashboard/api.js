// The gateway's JSON API, with the optional bearer token, and problem details made readable.

const TOKEN_KEY = "pop.dashboard.token";

export class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail ? `${title}: ${detail}` : title);
    this.status = status;
    this.title = title;
    this.detail = detail;
  }
}

export function getToken() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

// Relative to the page (…/dashboard/), so a gateway behind a path prefix works too.
function apiUrl(path, params) {
  const url = new URL(`..${path}`, window.location.href);
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(key, value);
  }
  return url;
}

function detailText(detail) {
  if (detail === null || detail === undefined) return "";
  return typeof detail === "string" ? detail : JSON.stringify(detail);
}

export async function getJSON(path, params) {
  const headers = { Accept: "application/json" };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(apiUrl(path, params), { headers, cache: "no-store" });
  } catch (err) {
    throw new ApiError(0, "Gateway unreachable", err.message);
  }
  if (!response.ok) {
    let body = {};
    try {
      body = await response.json();
    } catch {
      // not a problem body: the status line is all there is
    }
    const title = body.title || response.statusText || "Request failed";
    const detail = detailText(body.detail);
    throw new ApiError(response.status, title, detail === title ? "" : detail);
  }
  return response.json();
}

export function describeError(err) {
  if (!(err instanceof ApiError)) return String(err && err.message ? err.message : err);
  const prefix = err.status ? `${err.status} ` : "";
  return `${prefix}${err.title}${err.detail ? ` — ${err.detail}` : ""}`;
}
