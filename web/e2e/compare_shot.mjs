// A screenshot of the comparison page as a first-time visitor sees it, for the results folders.
// Usage: node compare_shot.mjs <base url of a served web/dist> <png> [width]
// (`bertvision web-assets --results ... --out <dist>` puts the results.json files beside it.)
import { chromium } from "playwright-core";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [base, png, width = "1280"] = process.argv.slice(2);
const ctx = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "bv-shot-")), {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
  viewport: { width: Number(width), height: 1000 },
});
const page = ctx.pages()[0] ?? (await ctx.newPage());
await page.goto(base);
await page.click("#tab-compare");
await page.waitForSelector("section.run .curve svg", { timeout: 120000 });
const curves = (await page.$$("section.run .curve svg")).length;
await page.screenshot({ path: png, fullPage: true });
console.log(`${png}: ${curves} curves`);
await ctx.close();
