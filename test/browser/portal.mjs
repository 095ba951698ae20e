// A generic step runner for pages served to a browser (the developer portal, and whatever else a test drives):
// one headless Chromium with a fresh profile runs the steps it is given in order and prints one JSON line
// on stdout: {"values": {name: text}, "url": last URL, "log": [...], "error": "...", "failedStep": n}.
//
//   node portal.mjs '{"chromium":"/usr/bin/chromium","spki":["…"],"timeoutMs":30000,"steps":[…]}'
//
// Steps ({"op": …}):
//   goto {url}                    open a URL and wait for it to load
//   type {sel, text}              type into a field (cleared first)
//   click {sel, nav}              click; nav true: and wait for the navigation it starts
//   check / uncheck {sel}         set a checkbox or radio button
//   wait {sel}                    wait until the selector matches
//   text {sel, name}              store the element's textContent, trimmed, as values[name] ("body": the page)
//   attr {sel, attr, name}        store an attribute
//   count {sel, name}             store how many elements match
//   url {name}                    store the page's URL
//   status {name}                 store the HTTP status of the last navigation
//   screenshot {path}             full-page PNG
//   login {username, password}    fill in Keycloak's login form (keycloak.v2: #username, #password, #kc-login)
//                                 if it is shown, and wait for the navigation back
// Only the leaf keys the Go side verified are trusted (--ignore-certificate-errors-spki-list).
import {createRequire} from "node:module";
import {pathToFileURL} from "node:url";

const require = createRequire(process.env.FHIRWALL_NODE_MODULES + "/");
const {default: puppeteer} = await import(pathToFileURL(require.resolve("puppeteer-core")).href);

const cfg = JSON.parse(process.argv[2]);
const args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"];
if (cfg.spki && cfg.spki.length) args.push("--ignore-certificate-errors-spki-list=" + cfg.spki.join(","));

const browser = await puppeteer.launch({executablePath: cfg.chromium, headless: true, args});
const log = [], values = {};
let lastStatus = 0, i = 0, page;
try {
  page = await browser.newPage();
  await page.setViewport({width: 1280, height: 900});
  page.setDefaultTimeout(cfg.timeoutMs || 30000);
  page.on("console", m => log.push("console." + m.type() + ": " + m.text()));
  page.on("requestfailed", r => log.push("failed: " + r.method() + " " + r.url() + " " + (r.failure() || {}).errorText));
  page.on("response", r => {
    if (r.request().isNavigationRequest() && r.request().frame() === page.mainFrame()) lastStatus = r.status();
    if (r.status() >= 400) log.push("http " + r.status() + ": " + r.request().method() + " " + r.url());
  });
  for (; i < cfg.steps.length; i++) {
    const s = cfg.steps[i];
    switch (s.op) {
      case "goto": await page.goto(s.url, {waitUntil: "load"}); break;
      case "type":
        await page.waitForSelector(s.sel);
        await page.$eval(s.sel, el => { el.value = ""; });
        await page.type(s.sel, s.text);
        break;
      case "click":
        await page.waitForSelector(s.sel);
        if (s.nav) await Promise.all([page.waitForNavigation({waitUntil: "load"}), page.click(s.sel)]);
        else await page.click(s.sel);
        break;
      case "check": case "uncheck": {
        await page.waitForSelector(s.sel);
        const want = s.op === "check";
        if (await page.$eval(s.sel, el => el.checked) !== want) await page.click(s.sel);
        break;
      }
      case "wait": await page.waitForSelector(s.sel); break;
      case "text": await page.waitForSelector(s.sel); values[s.name] = (await page.$eval(s.sel, el => el.textContent)).trim(); break;
      case "attr": await page.waitForSelector(s.sel); values[s.name] = await page.$eval(s.sel, (el, a) => el.getAttribute(a), s.attr); break;
      case "count": values[s.name] = String((await page.$$(s.sel)).length); break;
      case "url": values[s.name] = page.url(); break;
      case "status": values[s.name] = String(lastStatus); break;
      case "screenshot": await page.screenshot({path: s.path, fullPage: true}); break;
      case "login":
        await page.waitForSelector("#username");
        await page.type("#username", s.username);
        await page.type("#password", s.password);
        await Promise.all([page.waitForNavigation({waitUntil: "load"}), page.click("#kc-login")]);
        break;
      default: throw new Error("unknown step op " + JSON.stringify(s.op));
    }
  }
  process.stdout.write(JSON.stringify({values, url: page.url(), log}) + "\n");
} catch (e) {
  let shot = "";
  if (page && cfg.failureScreenshot) { try { await page.screenshot({path: cfg.failureScreenshot, fullPage: true}); shot = cfg.failureScreenshot; } catch {} }
  process.stdout.write(JSON.stringify({error: String(e), failedStep: i, values, url: page ? page.url() : "", log, failureScreenshot: shot}) + "\n");
} finally {
  await browser.close();
}
