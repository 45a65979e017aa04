/**
 * The dashboard's requests to the API (a browser module of its own, imported by app.ts): every fetch carries
 * `Authorization: Bearer <token>` once the server asked for one; the token is asked for with a form over the page and
 * kept in this tab's sessionStorage only.
 */

export type Params = Record<string, string | number>;

/** Where the token lives: this tab's session only, so closing the tab forgets it. */
const TOKEN_KEY = "telemetry-token";
let tokenAsked: Promise<string> | undefined;

/**
 * Asks for the API's token once (every request that got 401 meanwhile waits for the same answer), with a form over
 * the page; `wrong` says the last one was refused.
 */
function askToken(wrong: boolean): Promise<string> {
  tokenAsked ??= new Promise<string>((resolve) => {
    const input = document.createElement("input");
    input.type = "password";
    input.name = "token";
    input.autocomplete = "current-password";
    input.required = true;
    const prompt = document.createElement("p");
    prompt.textContent = wrong ? "That token was refused. Token:" : "This server needs a token:";
    const button = document.createElement("button");
    button.type = "submit";
    button.textContent = "Sign in";
    const form = document.createElement("form");
    form.id = "token-form";
    form.className = "token-form";
    form.append(prompt, input, button);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const token = input.value.trim();
      if (token === "") return;
      sessionStorage.setItem(TOKEN_KEY, token);
      form.remove();
      tokenAsked = undefined;
      resolve(token);
    });
    document.body.append(form);
    input.focus();
  });
  return tokenAsked;
}

/** An API answer's body. */
export const api = async <T>(path: string, params: Params = {}) => (await apiPage<T>(path, params)).body;

/** An API answer, and whether the server says more follow (`Link: <...>; rel="next"`). */
export async function apiPage<T>(path: string, params: Params = {}): Promise<{ body: T; more: boolean }> {
  const q = new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)]));
  let token = sessionStorage.getItem(TOKEN_KEY);
  for (;;) {
    const headers: Record<string, string> = token === null ? {} : { authorization: `Bearer ${token}` };
    const r = await fetch(`/api/${path}?${q.toString()}`, { headers });
    if (r.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      token = await askToken(token !== null);
      continue;
    }
    if (!r.ok) {
      const body = (await r.json()) as { error?: string };
      throw new Error(body.error || r.statusText);
    }
    return { body: (await r.json()) as T, more: /rel="next"/.test(r.headers.get("link") ?? "") };
  }
}
