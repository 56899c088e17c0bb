// The read API, relative to the page (/ui/ -> ../v1/...), so it also works under a path prefix.
// A 401 asks for an API key once, keeps it in sessionStorage (this tab only) and retries.

const KEY_STORAGE = "relbank.apiKey";

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && problem.detail) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || { title: `HTTP ${status}`, status };
  }
}

let pendingKey = null;

export function apiUrl(path, params) {
  const url = new URL(`../${path}`, document.baseURI);
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  return url;
}

export async function api(path, { params, method = "GET", body, contentType } = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = { Accept: "application/json, application/problem+json" };
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (key) headers.Authorization = `Bearer ${key}`;
    if (body !== undefined) headers["Content-Type"] = contentType || "application/json";
    let response;
    try {
      response = await fetch(apiUrl(path, params), { method, headers, body });
    } catch (err) {
      throw new ApiError(0, {
        title: "relbank does not answer",
        detail: `The service could not be reached (${err.message}). Is it running?`,
      });
    }
    const data = await readBody(response);
    if (response.status === 401 && attempt < 3) {
      // A key entered while this request was under way is tried before asking again.
      if (sessionStorage.getItem(KEY_STORAGE) === key) {
        await askForKey(key ? "That key was not accepted. Try another one." : "");
      }
      continue;
    }
    if (!response.ok) throw new ApiError(response.status, problemOf(response, data));
    return data;
  }
}

async function readBody(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { detail: text.slice(0, 500) };
  }
}

function problemOf(response, data) {
  const problem = data && typeof data === "object" ? { ...data } : {};
  problem.status = problem.status || response.status;
  problem.title = problem.title || response.statusText || `HTTP ${response.status}`;
  return problem;
}

// One prompt at a time: every request that got a 401 waits for the same answer.
function askForKey(message) {
  if (!pendingKey) {
    pendingKey = promptForKey(message).finally(() => {
      pendingKey = null;
    });
  }
  return pendingKey;
}

function promptForKey(message) {
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  const error = document.getElementById("key-error");
  error.textContent = message;
  error.hidden = !message;
  input.value = "";
  return new Promise((resolve, reject) => {
    dialog.addEventListener(
      "close",
      () => {
        const key = input.value.trim();
        input.value = "";
        if (dialog.returnValue === "ok" && key) {
          sessionStorage.setItem(KEY_STORAGE, key);
          document.dispatchEvent(new CustomEvent("relbank:key"));
          resolve();
        } else {
          reject(new ApiError(401, {
            title: "API key needed",
            detail: "This relbank needs an API key; reload the page to enter one.",
            status: 401,
          }));
        }
      },
      { once: true },
    );
    dialog.showModal();
    input.focus();
  });
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
}
