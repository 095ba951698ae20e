// Drives Debian's headless Chromium through a SMART standalone launch with puppeteer-core: opens the app's
// launch page, types the member's username and password into Keycloak's own login form, waits for the app
// page to finish, and prints what the page recorded (window.__result) as one JSON line on stdout.
//
//   node driver.mjs '{"chromium":"/usr/bin/chromium","launchURL":"…","username":"…","password":"…",
//                     "spki":["base64 sha256 of a trusted leaf's SubjectPublicKeyInfo"],"timeoutMs":60000}'
//
// Only the leaf keys the Go test verified against the stack's CA are accepted (--ignore-certificate-errors-spki-list):
// Chromium does not read a CA file, and trusting one key is narrower than ignoring every certificate error.
import {createRequire} from "node:module";
import {pathToFileURL} from "node:url";

// The npm tree lives outside the checkout ($FHIRWALL_CACHE/browser); ES imports ignore NODE_PATH.
const require = createRequire(process.env.FHIRWALL_NODE_MODULES + "/");
const {default: puppeteer} = await import(pathToFileURL(require.resolve("puppeteer-core")).href);

const cfg = JSON.parse(process.argv[2]);
const args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"];
if (cfg.spki && cfg.spki.length) args.push("--ignore-certificate-errors-spki-list=" + cfg.spki.join(","));

const browser = await puppeteer.launch({executablePath: cfg.chromium, headless: true, args});
const log = [];
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(cfg.timeoutMs);
  page.on("console", m => log.push("console." + m.type() + ": " + m.text()));
  page.on("requestfailed", r => log.push("failed: " + r.method() + " " + r.url() + " " + (r.failure() || {}).errorText));
  page.on("response", r => { if (r.status() >= 400) log.push("http " + r.status() + ": " + r.request().method() + " " + r.url()); });
  await page.goto(cfg.launchURL);
  // Keycloak's login page (keycloak.v2 theme: #username, #password, #kc-login), reached through
  // fhirclient's redirect from the discovery document's authorization_endpoint.
  await page.waitForFunction(() => document.title === "done" || document.querySelector("#username"));
  if (await page.$("#username")) {
    await page.type("#username", cfg.username);
    await page.type("#password", cfg.password);
    await Promise.all([page.waitForNavigation(), page.click("#kc-login")]);
  }
  await page.waitForFunction(() => document.title === "done");
  const result = await page.evaluate(() => window.__result);
  result.finalURL = page.url();
  result.log = log;
  process.stdout.write(JSON.stringify(result) + "\n");
} catch (e) {
  process.stdout.write(JSON.stringify({error: String(e), log}) + "\n");
} finally {
  await browser.close();
}
