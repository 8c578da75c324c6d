#!/usr/bin/env node
// Opens capi-cdc's health page in headless Chromium and checks it the way an
// operator would look at it. Prints one JSON line with what it saw; exit 0 on
// success, 1 on any failed check (the JSON then has "ok": false and "error").
//
//   node tests/browser/check.mjs --url http://127.0.0.1:PORT/ [--token T]
//        [--expect-paused NAME]... [--expect-delivered NAME:KIND:N]...
//        [--click-test] [--screenshot FILE]
//
// Chromium: $CHROMIUM or /usr/bin/chromium (Debian's package), driven by
// playwright-core; Playwright's own browser download is never used.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const WAIT_MS = 20_000;
const USAGE = "usage: node tests/browser/check.mjs --url URL [--token T] [--expect-paused NAME]... " +
  "[--expect-delivered NAME:KIND:N]... [--click-test] [--screenshot FILE]";
const FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

function parseArgs(argv) {
  const o = { url: null, token: null, paused: [], delivered: [], clickTest: false, screenshot: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--url") o.url = value();
    else if (a === "--token") o.token = value();
    else if (a === "--expect-paused") o.paused.push(value());
    else if (a === "--expect-delivered") {
      const spec = value();
      const parts = spec.split(":");
      const n = parts.pop();
      const name = parts.shift();
      const kind = parts.join(":");
      if (!name || !kind || !/^\d+$/.test(n)) usage(`--expect-delivered wants NAME:KIND:N, got "${spec}"`);
      o.delivered.push({ name, kind, n: Number(n) });
    } else if (a === "--click-test") o.clickTest = true;
    else if (a === "--screenshot") o.screenshot = value();
    else if (a === "-h" || a === "--help") { console.log(USAGE); process.exit(0); }
    else usage(`unknown argument "${a}"`);
  }
  if (!o.url) usage("--url is required");
  if (o.clickTest && o.token == null) usage("--click-test needs --token");
  return o;
}
function usage(msg) {
  console.log(JSON.stringify({ ok: false, error: msg }));
  console.error(`check.mjs: ${msg}\n${USAGE}`);
  process.exit(1);
}

class CheckFailed extends Error {}
const fail = (msg) => { throw new CheckFailed(msg); };

// Everything an operator would read, as plain text, keyed by the page's ids.
function readPage() {
  const t = (el) => (el ? (el.innerText ?? el.textContent).replace(/\s+/g, " ").trim() : null);
  const rep = document.getElementById("replication");
  const field = (root, f) => t(root && root.querySelector(`[data-field="${f}"]`));
  const destinations = {};
  for (const sec of document.querySelectorAll("[data-destination]")) {
    const kinds = {};
    for (const row of sec.querySelectorAll("[data-kind]")) {
      const cells = {};
      for (const c of row.querySelectorAll("td[data-field]")) cells[c.dataset.field] = t(c);
      kinds[row.dataset.kind] = cells;
    }
    destinations[sec.dataset.destination] = {
      status: t(sec.querySelector(".status")),
      paused_reason: field(sec, "paused_reason"),
      kinds,
    };
  }
  const dl = document.getElementById("dead-letters");
  const err = document.getElementById("error");
  return {
    title: document.title,
    updated: t(document.getElementById("updated")),
    error_banner: err && !err.hidden ? t(err) : null,
    replication: rep && {
      state: field(rep, "state"), slot: field(rep, "slot"), checkpoint_lsn: field(rep, "checkpoint_lsn"),
      lag: field(rep, "lag"), retained_wal: field(rep, "retained_wal"),
    },
    destinations,
    dead_letters: dl && {
      text: dl.querySelector("tbody") ? null : t(dl.querySelector('[data-field="list"]')),
      event_ids: [...dl.querySelectorAll('tbody [data-field="event_id"]')].map(t),
    },
    test_result: t(document.getElementById("test-result")) || null,
  };
}

async function waitForData(page, what) {
  try {
    await page.waitForFunction(() => /^updated /.test(document.getElementById("updated")?.textContent || ""),
      null, { timeout: WAIT_MS, polling: 200 });
  } catch {
    const seen = await page.evaluate(readPage).catch(() => null);
    fail(`${what}: the page showed no data within ${WAIT_MS / 1000} s` +
      (seen?.error_banner ? ` (page says: "${seen.error_banner}")` : seen ? ` (#updated says "${seen.updated}")` : ""));
  }
}

async function run(o, page, seen) {
  const origin = new URL(o.url).origin;
  const external = [];
  const pageErrors = [];
  page.on("request", (r) => {
    const u = r.url();
    if (!/^(data|blob|about):/.test(u) && new URL(u).origin !== origin) external.push(u);
  });
  page.on("pageerror", (e) => pageErrors.push(String(e && e.message || e)));
  page.on("console", (m) => { if (m.type() === "error") seen.console_errors.push(m.text()); });
  page.on("dialog", (d) => { pageErrors.push(`unexpected dialog: ${d.message()}`); d.dismiss().catch(() => {}); });

  const resp = await page.goto(o.url, { waitUntil: "domcontentloaded", timeout: WAIT_MS })
    .catch((e) => fail(`cannot open ${o.url}: ${e.message.split("\n")[0]}`));
  if (!resp.ok()) fail(`GET ${o.url} answered HTTP ${resp.status()}`);
  if ((await page.title()) !== "capi-cdc health") fail(`page title is "${await page.title()}", want "capi-cdc health"`);
  await waitForData(page, "first load");
  Object.assign(seen, await page.evaluate(readPage));

  if (!(await page.locator("#replication").isVisible())) fail("#replication is not visible");
  if (!/streaming/i.test(seen.replication?.state || "")) fail(`replication state reads "${seen.replication?.state}"`);

  for (const name of o.paused) {
    const status = page.locator(`[data-destination="${cssEsc(name)}"] .status`).first();
    try {
      await status.filter({ hasText: "PAUSED" }).waitFor({ state: "visible", timeout: WAIT_MS });
    } catch {
      const txt = await status.textContent({ timeout: 1000 }).catch(() => null);
      fail(txt == null ? `destination "${name}" is not on the page`
        : `destination "${name}" shows "${txt.trim()}", want PAUSED (waited ${WAIT_MS / 1000} s)`);
    }
  }

  for (const { name, kind, n } of o.delivered) {
    const sel = `[data-destination="${cssEsc(name)}"] [data-kind="${cssEsc(kind)}"] [data-field="delivered"]`;
    try {
      await page.waitForFunction(([s, want]) => {
        const c = document.querySelector(s);
        return c && c.textContent.replace(/[\s,.\u202f]/g, "") === String(want);
      }, [sel, n], { timeout: WAIT_MS, polling: 250 });
    } catch {
      const txt = await page.evaluate((s) => document.querySelector(s)?.textContent ?? null, sel);
      fail(txt == null ? `no delivered cell for ${name} / ${kind} (${sel})`
        : `${name} / ${kind} delivered shows "${txt.trim()}", want ${n} (waited ${WAIT_MS / 1000} s for refreshes)`);
    }
  }

  if (o.clickTest) {
    await page.fill("#token", o.token);
    if ((await page.getAttribute("#token", "type")) !== "password") fail("#token is not a password input");
    // An operator who reloads the page keeps the token (sessionStorage).
    await page.reload({ waitUntil: "domcontentloaded" });
    await waitForData(page, "after reload");
    if ((await page.inputValue("#token")) !== o.token) fail("the token was not remembered across a reload");
    await page.click("#send-test");
    try {
      await page.waitForFunction(() => {
        const r = document.getElementById("test-result");
        const s = r?.textContent.trim() || "";
        return s && !/^sending/.test(s);
      }, null, { timeout: WAIT_MS, polling: 100 });
    } catch { fail(`#test-result showed no answer within ${WAIT_MS / 1000} s`); }
    const result = (await page.innerText("#test-result")).replace(/\s+/g, " ").trim();
    seen.test_result = result;
    if (!/accepted/.test(result)) fail(`test event result is "${result}", want "accepted"`);
  }

  Object.assign(seen, await page.evaluate(readPage), { test_result: seen.test_result });
  if (external.length) fail(`the page requested other origins: ${[...new Set(external)].join(", ")}`);
  if (pageErrors.length) fail(`the page raised: ${pageErrors.join(" | ")}`);
}

// Minimal escaping for a value inside a CSS attribute selector "...".
const cssEsc = (s) => String(s).replace(/["\\]/g, "\\$&");

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const seen = { url: o.url, console_errors: [] };
  const profile = mkdtempSync(join(tmpdir(), "capi-cdc-check-"));
  let context = null;
  let page = null;
  let error = null;
  const watchdog = setTimeout(() => {
    console.log(JSON.stringify({ ok: false, error: "check.mjs took longer than 150 s", saw: seen }));
    process.exit(1);
  }, 150_000);
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      headless: true, args: FLAGS, viewport: { width: 1280, height: 900 }, timeout: 30_000,
    }).catch((e) => fail(`cannot start Chromium (${process.env.CHROMIUM || "/usr/bin/chromium"}): ${e.message.split("\n")[0]}`));
    page = context.pages()[0] || await context.newPage();
    await run(o, page, seen);
  } catch (e) {
    error = e instanceof CheckFailed ? e.message : `unexpected: ${e && e.stack || e}`;
  }
  if (o.screenshot && page) {
    await page.screenshot({ path: o.screenshot, fullPage: true })
      .then(() => { seen.screenshot = o.screenshot; })
      .catch((e) => { error = error || `screenshot failed: ${e.message}`; });
  }
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  clearTimeout(watchdog);
  if (error) {
    console.log(JSON.stringify({ ok: false, error, saw: seen }));
    console.error(`check.mjs: FAILED: ${error}`);
    console.error("browser: 0 passed, 1 failed"); // the plain closing line CI logs read
    process.exit(1);
  }
  console.log(JSON.stringify({ ok: true, saw: seen }));
  console.error("browser: 1 passed, 0 failed");
}

main();
