// What a first-time visitor waits for on a throttled link: Chromium with its network emulated
// (default 50 Mbit/s down, 40 ms latency, cache disabled), the time to the first paint, to the
// app running (the loading screen's "running") and to the demo model being ready, with the bytes
// of the wasm over the wire. A measurement, not a test: it prints numbers with its settings.
// Usage: node first_paint.mjs <base url of a served web/dist> [Mbit/s] [latency ms]
import { chromium } from "playwright-core";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [base, mbit = "50", latency = "40"] = process.argv.slice(2);
const ctx = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "bv-paint-")), {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
  viewport: { width: 1280, height: 900 },
});
const page = ctx.pages()[0] ?? (await ctx.newPage());
const cdp = await ctx.newCDPSession(page);
await cdp.send("Network.enable");
await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
const bytesPerSecond = (Number(mbit) * 1e6) / 8;
await cdp.send("Network.emulateNetworkConditions", {
  offline: false, latency: Number(latency), downloadThroughput: bytesPerSecond, uploadThroughput: bytesPerSecond,
});
const t0 = Date.now();
await page.goto(base, { waitUntil: "commit" });
await page.waitForFunction(() => document.getElementById("splash-app-bytes")?.textContent.includes("running"),
  null, { timeout: 600000, polling: 50 });
const running = Date.now() - t0;
await page.waitForSelector("#backend-label", { timeout: 600000 });
const ready = Date.now() - t0;
const paint = await page.evaluate(() => {
  const fcp = performance.getEntriesByType("paint").find((e) => e.name === "first-contentful-paint");
  const wasm = performance.getEntriesByType("resource").find((e) => e.name.includes(".wasm"));
  return { fcp: fcp?.startTime, wasmBytes: wasm?.encodedBodySize, wasmUnpacked: wasm?.decodedBodySize };
});
console.log(JSON.stringify({
  settings: { down_mbit_s: Number(mbit), latency_ms: Number(latency), cache: "disabled", chromium: ctx.browser()?.version() ?? "chromium" },
  first_contentful_paint_ms: Math.round(paint.fcp),
  app_running_ms: running,
  demo_model_ready_ms: ready,
  wasm_bytes_over_the_wire: paint.wasmBytes,
  wasm_bytes_unpacked: paint.wasmUnpacked,
}, null, 2));
await ctx.close();
