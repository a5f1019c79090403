/** Resolves after `ms` milliseconds (a timer; never rejects). */
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
