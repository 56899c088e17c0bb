// The active policy, fetched once per page load (the policy page refreshes it).
import { api } from "./api.js";

let cached = null;

export function activePolicy({ refresh = false } = {}) {
  if (!cached || refresh) {
    cached = api("v1/policy").catch((error) => {
      cached = null;
      throw error;
    });
  }
  return cached;
}
