// Video tasks as jobs (POST /jobs, see the README's "Long videos as jobs"): a progress bar with the stage and
// its counts, a Cancel button, and then the job's result, which is exactly the response /infer would have given.
// app.js calls runAsJob in place of its fetch of /infer; everything after (errors, drawing) is unchanged.

const JOBS_URL = new URL("../jobs", location.href);
const POLL_MS = 400;
const ENDED = ["succeeded", "failed", "cancelled"];

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function newKey() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID(); // secure contexts (https, localhost)
  return `${Date.now().toString(16)}-${Math.random().toString(16).slice(2)}`;
}

// "flow 3/5 · ETA 4 s" and the bar's fraction, from the job as GET /jobs/{id} shows it.
export function describe(job) {
  const progress = job.progress ?? {};
  const stage = progress.stage ?? job.status;
  const entry = progress.stages?.[stage] ?? {};
  const counts = entry.total ? ` ${entry.done}/${entry.total}` : "";
  const frames = progress.frames ? ` (${progress.frames} frames)` : "";
  const eta = job.eta_s != null ? ` · ETA ${Math.round(job.eta_s)} s` : "";
  const fraction = job.status === "succeeded" ? 1 : entry.total ? Math.min(entry.done / entry.total, 1) : 0;
  return { text: `${job.status}: ${stage}${counts}${frames}${eta}`, fraction };
}

// The bar and the Cancel button, placed after the status line while the job runs.
function progressView(cancel) {
  const box = document.createElement("div");
  box.id = "job-progress";
  const bar = document.createElement("progress");
  Object.assign(bar, { id: "job-bar", max: 1, value: 0 });
  bar.setAttribute("aria-label", "Job progress");
  const label = document.createElement("span");
  label.id = "job-stage";
  label.setAttribute("aria-live", "polite");
  const button = document.createElement("button");
  Object.assign(button, { id: "job-cancel", type: "button", textContent: "Cancel" });
  button.addEventListener("click", () => {
    button.disabled = true;
    cancel();
  });
  box.append(bar, " ", label, " ", button);
  document.querySelector("#job-progress")?.remove();
  document.querySelector("#status").after(box);
  return {
    show(job) {
      const { text, fraction } = describe(job);
      bar.value = fraction;
      label.textContent = text;
      if (ENDED.includes(job.status)) button.remove();
    },
  };
}

// Submit the /infer body as a job, follow it, and answer with its result (or the error that ended it).
export async function runAsJob(body, headers) {
  const submitted = await fetch(JOBS_URL, {
    method: "POST", headers: { ...headers, "Idempotency-Key": newKey() }, body: JSON.stringify(body),
  });
  if (!submitted.ok) return submitted;
  let job = await submitted.json();
  const jobUrl = new URL(`../jobs/${job.id}`, location.href);
  const view = progressView(() => fetch(jobUrl, { method: "DELETE", headers }));
  while (!ENDED.includes(job.status)) {
    view.show(job);
    await sleep(POLL_MS);
    const polled = await fetch(jobUrl, { headers });
    if (!polled.ok) return polled;
    job = await polled.json();
  }
  view.show(job);
  return fetch(new URL(`../jobs/${job.id}/result`, location.href), { headers });
}
