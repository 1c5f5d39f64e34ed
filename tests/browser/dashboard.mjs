// Loads the agent's dashboard in Debian's headless chromium for tests/dashboard.rs.
//
// usage: node dashboard.mjs <url> <screenshot.png> <expect.json>
// expect.json: {"marker": "...", "execs": N, "packets": N, "iface": "...", "token": "...",
//               "rule": "10.213.9.0/24"}
// Protocol: prints "ready" once the page is live (the caller then drives execs and packets),
// then one JSON line with what the DOM showed, and exits 0; any failure exits 1 with a reason.
import { chromium } from "playwright-core";

const [url, shot, expectFile] = process.argv.slice(2);
const expect = JSON.parse(await (await import("node:fs/promises")).readFile(expectFile, "utf8"));
const origin = new URL(url).origin;

function fail(why) {
  console.error("browser test: " + why);
  process.exit(1);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps"],
});
const result = { requests: [], external: [], console_errors: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1500 } });
  page.on("request", (r) => {
    result.requests.push(r.url());
    const u = new URL(r.url());
    if (!(u.protocol === "data:" || u.hostname === "127.0.0.1")) result.external.push(r.url());
  });
  page.on("console", (m) => { if (m.type() === "error") result.console_errors.push(m.text()); });
  page.on("pageerror", (e) => result.console_errors.push(String(e)));
  page.setDefaultTimeout(30000);

  await page.goto(url, { waitUntil: "load" });
  await page.waitForFunction(() => document.getElementById("conn").textContent === "live");
  // The exec stream is subscribed when its first byte arrives; give it a moment to connect.
  await page.waitForTimeout(500);
  console.log("ready");

  // The driven execs reach the tail; the filter narrows the tail to exactly them.
  await page.waitForFunction((m) => document.getElementById("exec-tail").textContent.includes(m), expect.marker);
  await page.fill("#exec-filter", expect.marker);
  await page.waitForFunction(
    (n) => Number(document.getElementById("exec-shown").textContent) >= n, expect.execs);
  await page.waitForTimeout(300);
  result.filtered = await page.$$eval("#exec-tail tr", (rows) => rows.map((r) => [...r.children].map((c) => c.textContent)));
  result.exec_shown = Number(await page.textContent("#exec-shown"));

  // The XDP table shows the driven packets.
  const sel = `#xdp-rows tr[data-iface="${expect.iface}"][data-action="XDP_PASS"] td:nth-child(3)`;
  await page.waitForFunction(([s, n]) => {
    const td = document.querySelector(s);
    return td && td.textContent.replace(/,/g, "") === String(n);
  }, [sel, expect.packets]);
  result.xdp_pass_packets = Number((await page.textContent(sel)).replace(/,/g, ""));
  result.exec_total = Number((await page.textContent("#exec-total")).replace(/,/g, ""));
  result.uid0 = await page.$eval('#uid-rows tr[data-uid="0"] td:nth-child(2)', (td) => Number(td.textContent.replace(/,/g, "")))
    .catch(() => null);
  result.syscall_rows = await page.$$eval("#sys-rows tr", (r) => r.length);
  result.handler_rows = await page.$$eval("#handler-rows tr", (r) => r.length);
  result.health = await page.$$eval("#health-rows tr", (rows) => rows.map((r) => [...r.children].map((c) => c.textContent)));
  result.charts = await page.$$eval(".uplot canvas", (c) => c.length);

  // Firewall: a wrong token shows the server's error; the right one adds and removes the rule.
  await page.fill("#token", "not-the-token");
  await page.dispatchEvent("#token", "change");
  await page.fill("#rule-cidr", expect.rule);
  await page.click("#rule-form button[type=submit]");
  await page.waitForFunction(() => document.getElementById("rule-error").textContent.length > 0);
  result.bad_token_error = await page.textContent("#rule-error");
  await page.fill("#token", expect.token);
  await page.dispatchEvent("#token", "change");
  await page.click("#rule-form button[type=submit]");
  await page.waitForSelector(`#rule-rows tr[data-cidr="${expect.rule}"]`);
  result.rule_error_after_add = await page.textContent("#rule-error");
  result.session_token = await page.evaluate(() => sessionStorage.getItem("mapscope-token"));
  // Screenshot with the rule in place and the exec tail unfiltered.
  await page.fill("#exec-filter", "");
  await page.dispatchEvent("#exec-filter", "input");
  await page.waitForTimeout(1200);
  await page.screenshot({ path: shot, fullPage: true });
  await page.click(`#rule-rows tr[data-cidr="${expect.rule}"] button`);
  await page.waitForSelector(`#rule-rows tr[data-cidr="${expect.rule}"]`, { state: "detached" });
  result.rule_removed = true;
  for (const r of result.requests) {
    if (!r.startsWith(origin + "/") && !r.startsWith("data:")) result.external.push(r);
  }
  console.log(JSON.stringify(result));
} catch (e) {
  fail(String(e && e.stack || e));
} finally {
  await browser.close();
}
