// The web page in headless Chromium: search, generate with and without retrieval, and
// caption a dropped image; each step must render its results. Usage:
//   node page.mjs URL IMAGE SHOTS_DIR   (NODE_PATH names playwright-core's node_modules)
// It saves SHOTS_DIR/generate.png after generating and SHOTS_DIR/caption.png at the end.
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");

const [url, image, shots] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage"],
});
const failures = [];
// A task's click sets the message at once; it reads "Done." when both columns are drawn.
const finished = (page) => page.waitForFunction(() => {
  const message = document.getElementById("message");
  return message.textContent === "Done." || message.className === "error";
}, null, { timeout: 120000 });
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 1000 } });
  page.on("pageerror", (error) => failures.push("page error: " + error.message));
  await page.goto(url);
  await page.waitForFunction(() => /documents in memory/.test(document.getElementById("health").textContent));

  await page.fill("#text", "grinning face");
  await page.click("#search");
  await page.waitForSelector("#retrieved [data-testid=retrieved] img");
  const found = await page.$$eval("#retrieved .card", (cards) => cards.map((c) => c.textContent));
  if (found.length < 1 || !found.every((text) => /score -?\d\.\d{3}/.test(text))) {
    failures.push("search rendered " + JSON.stringify(found));
  }

  await page.fill("#samples", "2");
  await page.click("#generate");
  await finished(page);
  const sizes = await page.$$eval("#with img, #without img", (images) =>
    images.map((img) => [img.naturalWidth, img.naturalHeight]));
  if (sizes.length !== 4 || !sizes.every(([w, h]) => w === 64 && h === 64)) {
    failures.push("generate rendered images of sizes " + JSON.stringify(sizes));
  }
  await page.screenshot({ path: shots + "/generate.png", fullPage: true });

  await page.setInputFiles("#file", image);
  await page.waitForSelector("#drop img");
  await page.click("#caption");
  await finished(page);
  const message = await page.textContent("#message");
  if (message !== "Done.") failures.push("after captioning the page says " + JSON.stringify(message));
  const captions = await page.$$eval("#with .card, #without .card", (cards) =>
    cards.map((c) => [c.querySelector("img") !== null, c.textContent]));
  if (captions.length !== 4 || !captions.every(([hasImage, text]) => !hasImage && /CLIP -?\d\.\d{3}/.test(text))) {
    failures.push("caption rendered " + JSON.stringify(captions));
  }
  await page.screenshot({ path: shots + "/caption.png", fullPage: true });
} catch (error) {
  failures.push(String(error));
} finally {
  await browser.close();
}
if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}
console.log("page ok");
