// End-to-end test of the built app in a real headless Chromium (Debian's /usr/bin/chromium).
// Usage: node e2e.mjs <base url> <native answer JSON> <old results.json> <screenshot dir>
//        <native classify JSON>
// Checks: the loading screen is in the page before the wasm runs and goes once the model is
// ready; the tiny model's export loads (CPU fallback without WebGPU; with --enable-unsafe-webgpu
// WebGPU passes the model self-check or is refused in a styled note, the CPU taking over), with
// its "about this model" line; the three answers, above the fold, and the backend label appear;
// the logits equal the native code's (`bertvision answer`) within tolerance; a second visit
// reads the model from the browser's cache; the classification page's probabilities equal
// `bertvision classify`'s on its first sample; the comparison page draws its overview and
// charts, never "-0 s"; no page scrolls sideways at 390 px; a bad weight file / an old
// results.json show an error on the page; and no WebGPU validation message reaches the console.
import { chromium } from "playwright-core";
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [base, nativeJson, oldResults, shots, nativeClassifyJson] = process.argv.slice(2);
const native = JSON.parse(readFileSync(nativeJson, "utf8"));
const nativeClassify = JSON.parse(readFileSync(nativeClassifyJson, "utf8"));
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"];
const TOLERANCE = { cpu: 1e-4, webgpu: 2e-3 };
let failures = 0;
const check = (ok, what) => {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures++;
};

async function browser(extra) {
  const userDataDir = mkdtempSync(join(tmpdir(), "bv-chromium-"));
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    // Playwright adds what it needs to drive the browser (the debugging pipe); ours come on top.
    args: [...FLAGS, ...extra],
    viewport: { width: 1280, height: 1000 },
  });
}

/// Largest |a - b| over every window's start and end logits.
function maxDiff(page, nat) {
  let worst = 0;
  nat.forEach(([s, e], w) => {
    [[s, page[w][0]], [e, page[w][1]]].forEach(([x, y]) => {
      if (x.length !== y.length) worst = Infinity;
      x.forEach((v, i) => { worst = Math.max(worst, Math.abs(v - y[i])); });
    });
  });
  return worst;
}

// A WebGPU validation error as Chromium prints it (a rejected command buffer, a bad binding).
const VALIDATION = /validat|Invalid CommandBuffer|previous error|synchronization scope/i;

/// Every console line and page error of `page`, and the WebGPU validation messages among them.
function listen(page) {
  const seen = { errors: [], validation: [] };
  page.on("pageerror", (e) => seen.errors.push(String(e)));
  page.on("console", (m) => {
    if (VALIDATION.test(m.text())) seen.validation.push(m.text());
    if (m.type() === "error") seen.errors.push(m.text());
  });
  return seen;
}

/// The model card's note under the backend label: { text, warning } or null.
const backendNote = (page, prefix = "") => page.$eval(`#${prefix}backend-note`,
  (e) => ({ text: e.textContent, warning: e.classList.contains("warning") })).catch(() => null);

async function askAndCompare(ctx, kind, expectLabel, { force = null, strict = true, name = kind } = {}) {
  const page = ctx.pages()[0] ?? await ctx.newPage();
  const seen = listen(page);
  const errors = seen.errors;
  await page.goto(base, { waitUntil: "load" });
  if (force) {
    await page.waitForSelector("#backend-label", { timeout: 120000 });
    await page.selectOption("#backend-choice", force);
    await page.click("#load-demo");
    // Either it runs there, or the self-check refused it and the CPU took over with a warning.
    await page.waitForFunction((f) => {
      const l = document.querySelector("#backend-label");
      return l && (l.textContent.toLowerCase().includes(f) || document.querySelector("#backend-note.warning"));
    }, force, { timeout: 300000 });
  }
  const label = await page.waitForSelector("#backend-label", { timeout: 300000 })
    .then((e) => e.textContent()).catch(() => null);
  const note = await backendNote(page);
  if (force && label !== null && !label.toLowerCase().includes(force)) {
    // Refused after the model self-check: a styled warning, and the CPU's numbers from here on.
    check(note !== null && note.warning && note.text.includes("self-check"), `${kind}: refused in a styled warning ("${note?.text}")`);
    kind = "cpu";
    strict = true;
    expectLabel = "CPU";
  } else if (label !== null && label.startsWith("WebGPU")) {
    kind = "webgpu";
  }
  check(label !== null && label.includes(expectLabel), `${kind}: backend label "${label}" contains "${expectLabel}"`);
  if (note) console.log(`  note under the label: ${note.warning ? "(warning) " : ""}${note.text}`);
  if (label === null) {
    console.log(`  page errors: ${errors.join(" | ")}`);
    const err = await page.$("#error");
    if (err) console.log(`  page says: ${await err.textContent()}`);
    await page.screenshot({ path: join(shots, `qa-${name}-failed.png`), fullPage: true });
    return;
  }
  // The page preselects the first sample; the native answer was computed for that one.
  check(await page.inputValue("#question") === native.question, `${kind}: first sample preselected`);
  check(await page.$("#splash") === null, `${kind}: the loading screen is gone once the model is ready`);
  const about = await page.textContent("#about").catch(() => null);
  check(about !== null && about.includes("splade-tiny") && about.includes("parameters") && about.includes("EM"),
    `${kind}: about this model: "${about}"`);
  // SwiftShader's WebGPU keeps the page busy for a minute or more (74 s for one forward pass
  // on this 2-core machine), also before the click lands: generous limits, not a flaky test.
  await page.click("#ask", { timeout: 300000 });
  await page.waitForSelector("#answer-ensemble", { timeout: 300000 });
  for (const m of ["bert", "bertvision", "ensemble"]) {
    const text = await page.textContent(`#answer-${m} .text`);
    check(text && text.length > 0, `${kind}: ${m} answer shown ("${text}")`);
  }
  const got = JSON.parse(await page.textContent("#logits-json"));
  const dBert = maxDiff(got.bert, native.answers.methods[0].scores);
  const dBv = maxDiff(got.bertvision, native.answers.methods[1].scores);
  const diffs = `logits vs native max |diff| BERT ${dBert.toExponential(2)}, BERTVision ${dBv.toExponential(2)}`;
  const nativeTexts = native.answers.methods.map((m) => m.prediction.text);
  if (strict) {
    check(dBert <= TOLERANCE[kind] && dBv <= TOLERANCE[kind], `${kind}: ${diffs} (tolerance ${TOLERANCE[kind]})`);
    check(JSON.stringify(got.answers) === JSON.stringify(nativeTexts), `${kind}: same decisions as native ${JSON.stringify(nativeTexts)}`);
  } else {
    console.log(`  ${kind} (measured, not asserted): ${diffs}; answers ${JSON.stringify(got.answers)} vs native ${JSON.stringify(nativeTexts)}`);
  }
  check((await page.$$("#prob-strip rect")).length > 10, `${kind}: probability strip drawn`);
  const noAnswer = got.answers.every((a) => a === "");
  const sentence = await page.textContent("#no-answer-note").catch(() => null);
  check(noAnswer === (sentence !== null), `${kind}: the "none answered" sentence shown exactly when all say no answer (${sentence})`);
  // Above the fold on a 900-px window.
  await page.setViewportSize({ width: 1280, height: 900 });
  const top = await page.$eval("#answer-bert", (e) => e.getBoundingClientRect().top + window.scrollY);
  check(top < 900, `${kind}: the answers start ${Math.round(top)} px down (< 900)`);
  await page.setViewportSize({ width: 1280, height: 1000 });
  const timings = await page.textContent("#timings");
  console.log(`  ${kind} timings: ${timings}`);
  // A lower threshold decision is recomputed without running the model again.
  await page.fill("#threshold", "10");
  await page.dispatchEvent("#threshold", "input");
  await page.screenshot({ path: join(shots, `qa-${name}.png`), fullPage: true });
  check(errors.length === 0, `${kind}: no page errors ${errors.join(" | ")}`);
  check(seen.validation.length === 0, `${kind}: no WebGPU validation message ${seen.validation.slice(0, 3).join(" | ")}`);
  const downloads = await page.textContent("#downloads").catch(() => "");
  console.log(`  ${kind} downloads: ${downloads}`);
  return { label, note, timings, downloads, max_abs_diff_bert: dBert, max_abs_diff_bertvision: dBv };
}

/// The classification page on its first sample: every method's decision and probabilities
/// against `bertvision classify` on the same sentence pair.
async function classifyAndCompare(ctx, kind, { force = null, strict = true, name = kind } = {}) {
  const page = ctx.pages()[0] ?? await ctx.newPage();
  const seen = listen(page);
  const errors = seen.errors;
  await page.goto(`${base}#classify`, { waitUntil: "load" });
  if (force) {
    await page.waitForSelector("#cls-backend-label", { timeout: 120000 });
    await page.selectOption("#cls-backend-choice", force);
    await page.click("#cls-load-demo");
    await page.waitForFunction((f) => {
      const l = document.querySelector("#cls-backend-label");
      return l && (l.textContent.toLowerCase().includes(f) || document.querySelector("#cls-backend-note.warning"));
    }, force, { timeout: 300000 });
  }
  const label = await page.waitForSelector("#cls-backend-label", { timeout: 120000 })
    .then((e) => e.textContent()).catch(() => null);
  check(label !== null, `classify ${kind}: model loaded on "${label}"`);
  if (force && label !== null && !label.toLowerCase().includes(force)) {
    const note = await backendNote(page, "cls-");
    check(note !== null && note.warning && note.text.includes("self-check"), `classify ${kind}: refused in a styled warning ("${note?.text}")`);
    kind = "cpu";
  }
  if (label === null) {
    const err = await page.$("#cls-error");
    if (err) console.log(`  page says: ${await err.textContent()}`);
    await page.screenshot({ path: join(shots, `classify-${name}-failed.png`), fullPage: true });
    return;
  }
  check(await page.inputValue("#cls-text") === nativeClassify.text, `classify ${kind}: first sample preselected`);
  await page.click("#cls-run", { timeout: 300000 });
  await page.waitForSelector("#cls-method-ensemble_mean", { timeout: 300000 });
  const got = JSON.parse(await page.textContent("#cls-json")).answers;
  const want = nativeClassify.answers;
  let worst = 0;
  want.methods.forEach((m, i) => m.probabilities.forEach((p, j) => {
    worst = Math.max(worst, Math.abs(p - (got.methods[i]?.probabilities[j] ?? Infinity)));
  }));
  const same = JSON.stringify(got.methods.map((m) => m.prediction)) === JSON.stringify(want.methods.map((m) => m.prediction));
  const what = `probabilities vs native max |diff| ${worst.toExponential(2)}, decisions ${JSON.stringify(got.methods.map((m) => m.prediction))}`;
  if (strict) {
    check(worst <= TOLERANCE[kind] && same, `classify ${kind}: ${what} (tolerance ${TOLERANCE[kind]})`);
  } else {
    console.log(`  classify ${kind} (measured, not asserted): ${what}; native ${JSON.stringify(want.methods.map((m) => m.prediction))}`);
  }
  check((await page.$$(".classify .bar")).length >= 8, `classify ${kind}: a bar per label and method`);
  console.log(`  classify ${kind} timings: ${await page.textContent("#cls-timings")}`);
  await page.screenshot({ path: join(shots, `classify-${name}.png`), fullPage: true });
  check(errors.length === 0, `classify ${kind}: no page errors ${errors.join(" | ")}`);
  check(seen.validation.length === 0, `classify ${kind}: no WebGPU validation message ${seen.validation.slice(0, 3).join(" | ")}`);
  return { label, max_abs_diff_probabilities: worst, same_decisions: same };
}

/// No page scrolls sideways at phone width; a screenshot of each at 390 px.
async function phoneWidth(ctx) {
  const page = ctx.pages()[0];
  await page.setViewportSize({ width: 390, height: 844 });
  for (const tab of ["qa", "classify", "compare"]) {
    await page.click(`#tab-${tab}`);
    await page.waitForTimeout(300);
    const [scroll, inner] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    check(scroll <= inner, `390 px: the ${tab} page is ${scroll} px wide (window ${inner})`);
    await page.screenshot({ path: join(shots, `${tab}-390px.png`), fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 1000 });
}

const report = {};
// 0. The loading screen is in the HTML itself, drawn before any wasm arrives.
{
  const html = await (await fetch(base)).text();
  check(html.includes('id="splash"') && html.includes("splash-app"), "index.html carries the loading screen");
}
// 1. No WebGPU flag: the CPU fallback.
{
  const ctx = await browser([]);
  report.cpu = await askAndCompare(ctx, "cpu", "CPU");
  // A second visit reads the model from the browser's cache (manifest.json's sha256 match).
  report.cpu_second_visit = await askAndCompare(ctx, "cpu", "CPU", { name: "cpu-second-visit" });
  check((report.cpu_second_visit?.downloads ?? "").includes("model") && report.cpu_second_visit.downloads.includes("from this browser's cache"),
    `second visit: "${report.cpu_second_visit?.downloads}"`);
  // A corrupt weight file chosen in the file picker is an error on the page, not a blank page.
  const page = ctx.pages()[0];
  const dir = mkdtempSync(join(tmpdir(), "bv-bad-"));
  const files = ["config.json", "tokenizer.json", "head.safetensors", "head.json"].map((f) => {
    const from = f.startsWith("head") ? `models/squad/${f}` : `models/squad/bert/${f}`;
    return { name: f, url: from };
  });
  const picked = [];
  for (const f of files) {
    const res = await page.evaluate(async (u) => Array.from(new Uint8Array(await (await fetch(u)).arrayBuffer())), f.url);
    writeFileSync(join(dir, f.name), Buffer.from(res));
    picked.push(join(dir, f.name));
  }
  writeFileSync(join(dir, "model.safetensors"), Buffer.from("\x08\x00\x00\x00\x00\x00\x00\x00{garbage"));
  picked.push(join(dir, "model.safetensors"));
  await page.setInputFiles("#model-files", picked);
  const err = await page.waitForSelector("#error", { timeout: 30000 }).then((e) => e.textContent()).catch(() => null);
  check(err !== null && err.includes("model.safetensors"), `bad weights: page shows "${err}"`);
  await page.screenshot({ path: join(shots, "qa-bad-weights.png"), fullPage: true });

  // 2. The comparison page on the served results.json files.
  await page.click("#tab-compare");
  await page.waitForSelector("section.run svg.bar-chart rect", { timeout: 60000 });
  const runs = await page.$$eval("section.run", (els) => els.map((e) => e.dataset.task));
  check(runs.length >= 3, `compare: ${runs.length} runs drawn (${runs.join(", ")})`);
  const overviewBars = (await page.$$("#compare-overview svg.overview-chart g.bar")).length;
  check(overviewBars >= 4 * 2, `compare: the overview draws ${overviewBars} bars`);
  const jumps = await page.$$eval("#compare-overview nav.jump a", (els) => els.map((e) => e.getAttribute("href")));
  const anchors = await page.$$eval("section.run", (els) => els.map((e) => `#${e.id}`));
  check(jumps.length === runs.length && jumps.every((j, i) => j === anchors[i]), `compare: a jump link per run (${jumps.join(", ")})`);
  const pageText = await page.textContent("main");
  check(!pageText.includes("-0 s"), "compare: no \"-0 s\" (the head-only run's fine-tuning time is recorded as -0.0)");
  check(!pageText.includes("/tmp/") && !pageText.includes("/work/"), "compare: no local folders on the page");
  const bars = (await page.$$("section.run svg.bar-chart g.bar")).length;
  check(bars >= 10, `compare: ${bars} bars drawn`);
  check((await page.$$("section.run g.whisker")).length > 0, "compare: error bars drawn (several seeds)");
  check((await page.$$("table.examples tbody tr")).length > 0, "compare: SQuAD per-question table");
  // The curves of a run with several extraction points, and the methods shown at another point.
  const curves = (await page.$$("section.run .curve svg")).length;
  check(curves >= 2, `compare: ${curves} curves drawn`);
  const labels = await page.$$eval("section.run table.metrics td:first-child", (els) => els.map((e) => e.textContent));
  check(labels.some((l) => l === "BERT-1e") && labels.some((l) => l === "BERTVision-1e"), `compare: methods named by their point (${labels.join(", ")})`);
  const squadLabels = await page.$$eval("section.run[data-task=SQuAD2] table.metrics td:first-child", (els) => els.map((e) => e.textContent));
  check(new Set(squadLabels).size === squadLabels.length, `compare: no method twice (${squadLabels.join(", ")})`);
  await page.selectOption("section.run select.point-select", { index: 0 });
  const atHalf = await page.$$eval("section.run table.metrics td:first-child", (els) => els.map((e) => e.textContent));
  check(atHalf.some((l) => l === "BERTVision-0.5e"), `compare: the 0.5-epoch point chosen (${atHalf.join(", ")})`);
  await page.screenshot({ path: join(shots, "compare-curves.png"), fullPage: true });
  await page.selectOption("section.run select.point-select", { index: 1 });
  await page.selectOption("select.agree-filter", "disagree");
  await page.screenshot({ path: join(shots, "compare.png"), fullPage: true });
  await page.setInputFiles("#results-files", oldResults);
  const oldErr = await page.waitForSelector(".compare-error", { timeout: 30000 }).then((e) => e.textContent()).catch(() => null);
  check(oldErr !== null && oldErr.includes("bertvision-results/1"), `old results.json: page shows "${oldErr}"`);
  await page.screenshot({ path: join(shots, "compare-overview.png"), fullPage: false });
  // 3. The classification page on the CPU.
  report.classify_cpu = await classifyAndCompare(ctx, "cpu");
  await phoneWidth(ctx);
  await ctx.close();
}
// 4. With --enable-unsafe-webgpu Chromium offers a SwiftShader WebGPU adapter. On Auto the page
// uses it only when the quick checks and the model self-check pass, else keeps to the CPU and
// says why; forcing WebGPU always runs the model self-check on it: it passes (WebGPU's numbers
// are held to the tolerance) or WebGPU is refused in a styled warning and the CPU answers.
{
  const ctx = await browser(["--enable-unsafe-webgpu"]);
  report.webgpu_auto = await askAndCompare(ctx, "cpu", "", { name: "webgpu-flag-auto" });
  await ctx.close();
}
{
  const ctx = await browser(["--enable-unsafe-webgpu"]);
  report.webgpu_forced = await askAndCompare(ctx, "webgpu", "WebGPU", { force: "webgpu" });
  // 39 s of SwiftShader per forward pass: measured on request only (E2E_CLASSIFY_WEBGPU=1).
  if (process.env.E2E_CLASSIFY_WEBGPU) {
    report.classify_webgpu_forced = await classifyAndCompare(ctx, "webgpu", { force: "webgpu" });
  }
  await ctx.close();
}
writeFileSync(join(shots, "e2e-report.json"), JSON.stringify(report, null, 2));
console.log(failures === 0 ? "web e2e: all checks passed" : `web e2e: ${failures} check(s) failed`);
process.exit(failures === 0 ? 0 : 1);
