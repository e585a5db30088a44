// End-to-end test of `reins serve` in headless Chromium, driven by tests/web_browser.rs, which
// prepares the repository and its runs, starts the server and passes them in the environment:
// REINS_URL, RUN_WAITING (approve), RUN_REJECT, RUN_LIVE (cancel), RUN_AGENT, RUN_FAILED
// (resume, then resume from a node), RUN_FAN (a live fan-out whose last two instances wait for
// the file GO_FLAG), CHROMIUM, SHOTS.
// Prints one line `RESULT {json}` with the measurements; exits non-zero on any failure.
import { chromium } from "playwright-core";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";

const env = (name) => { const v = process.env[name]; if (!v) throw new Error(`${name} is not set`); return v; };
const url = env("REINS_URL");
const runWaiting = env("RUN_WAITING"), runReject = env("RUN_REJECT"), runLive = env("RUN_LIVE"), runAgent = env("RUN_AGENT");
const runFailed = env("RUN_FAILED");
const runFan = env("RUN_FAN"), goFlag = env("GO_FLAG");
const shots = env("SHOTS");
mkdirSync(shots, { recursive: true });
// The flags Chromium needs as root in a container, and nothing reaching the network.
const args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const dirs = [];
async function browser() {
  const dir = mkdtempSync(join(tmpdir(), "reins-chromium-"));
  dirs.push(dir);
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: env("CHROMIUM"), headless: true, args, viewport: { width: 1400, height: 900 },
  });
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(30000);
  page.on("pageerror", (e) => { console.error("page error:", e.message); errors.push(e.message); });
  return { context, page };
}
const errors = [];
const step = (text) => console.log(`step: ${text}`);
const result = {};
let one, two;
try {
  one = await browser();
  two = await browser();
  const a = one.page, b = two.page;

  step("the run list shows the waiting runs first");
  await a.goto(url + "/");
  await a.waitForSelector("table.runs tbody tr[data-run]");
  const order = await a.$$eval("table.runs tbody tr[data-run]", (rows) => rows.map((r) => [r.dataset.run, r.dataset.status]));
  assert.equal(order.length, 6, JSON.stringify(order));
  assert.deepEqual(order[0], [runWaiting, "waiting"]);
  assert.deepEqual(order[1], [runReject, "waiting"]);
  assert.ok(await a.isVisible(`[data-count=waiting] >> text=2`), "live counts show 2 waiting");
  await a.screenshot({ path: join(shots, "run-list.png"), fullPage: true });

  step("a second browser opens the same run");
  await b.goto(`${url}/runs/${runWaiting}`);
  await b.waitForSelector(`.gate[data-gate=gate][data-waiting=true]`);

  step("open the run: the DAG, top-down");
  await a.click(`a[href="/runs/${runWaiting}"]`);
  await a.waitForSelector(`.dag .node[data-node=gate][data-status=waiting]`);
  // Positions are read once the page has laid the graph out (under load a measure taken while
  // the page swaps views can see no boxes yet).
  const tops = () => a.$$eval(".dag .node", (nodes) => Object.fromEntries(nodes.map((n) => [n.dataset.node, n.getBoundingClientRect().top])));
  await a.waitForFunction(() => [...document.querySelectorAll(".dag .node")].every((n) => n.getBoundingClientRect().height > 0), null, { timeout: 10000 }).catch(() => {});
  const ys = await tops();
  assert.ok(ys.build < ys.gate && ys.gate < ys.deploy, `top-down: ${JSON.stringify(ys)}`);
  assert.equal(await a.getAttribute(".dag .node[data-node=build]", "data-status"), "success");
  assert.equal(await a.getAttribute(".dag .node[data-node=deploy]", "data-status"), "pending");
  assert.ok((await a.textContent(".gate[data-gate=gate] .question")).includes("Ship it?"));
  await a.click(".dag .node[data-node=build]");
  await a.waitForSelector(`pre[data-log="stdout.log"]:has-text("built")`);
  await a.screenshot({ path: join(shots, "run-page.png"), fullPage: true });

  step("approve with a comment and watch the run finish live");
  // Note when each node's state shows on the page, to compare with the events' times.
  await a.evaluate(() => {
    window.__shown = [];
    new MutationObserver(() => {
      for (const n of document.querySelectorAll(".dag .node")) {
        const key = `${n.dataset.node}:${n.dataset.status}`;
        if (!window.__shown.some((s) => s.key === key)) window.__shown.push({ key, at: Date.now() });
      }
    }).observe(document.getElementById("main"), { subtree: true, childList: true, attributes: true });
  });
  const navigations = [];
  a.on("framenavigated", (f) => { if (f === a.mainFrame()) navigations.push(f.url()); });
  await a.fill(".gate[data-gate=gate] textarea", "ship it from the browser");
  await a.click(".gate[data-gate=gate] button[data-action=approve]");
  await a.waitForSelector(".dag .node[data-node=deploy][data-status=running]");
  await a.waitForSelector(".run-head .badge[data-status=success]", { timeout: 60000 });
  await a.waitForSelector(".dag .node[data-node=deploy][data-status=success]");
  assert.deepEqual(navigations, [], "the page never reloaded");
  assert.ok((await a.textContent(".gate[data-answered=approved]")).includes("ship it from the browser"));

  step("the second browser sees the answer without reloading");
  await b.waitForSelector(`.gate[data-answered=approved]:has-text("ship it from the browser")`);
  await b.waitForSelector(".run-head .badge[data-status=success]");

  step("time from an event written to the page showing it");
  const shown = await a.evaluate(() => window.__shown);
  const run = await a.evaluate(async (id) => (await fetch(`/api/runs/${id}`)).json(), runWaiting);
  const deploy = run.state.nodes.find((n) => n.id === "deploy");
  const at = (key) => (shown.find((s) => s.key === key) || {}).at;
  result.latency_ms = {
    deploy_started: at("deploy:running") - Date.parse(deploy.started_at),
    deploy_succeeded: at("deploy:success") - Date.parse(deploy.finished_at),
  };
  for (const [k, v] of Object.entries(result.latency_ms)) assert.ok(Number.isFinite(v), `${k}: ${v}`);

  step("open an artifact");
  await a.click(`[data-artifact="report.md"]`);
  await a.waitForSelector(`[data-testid=artifact-view] .markdown strong:has-text("all good")`);
  assert.equal(await a.$$eval("[data-testid=artifact-view] script", (s) => s.length), 0, "no script from an artifact");

  step("open an agent node's transcript");
  await a.goto(`${url}/runs/${runAgent}?node=ask`);
  await a.waitForSelector(`[data-testid=transcript] details summary:has-text("Write")`);
  await a.waitForSelector(`[data-testid=transcript] .text:has-text("I wrote the notes.")`);
  assert.ok((await a.textContent("[data-testid=node-source]")).includes("MARK-NOTES"));
  // The Bash call slept a second: its duration, by the times reins noted, shows beside it.
  const took = a.locator(`[data-testid=transcript] details[data-tool=Bash] summary .dur`);
  assert.match(await took.textContent(), /^ · \d+(\.\d)?s$/);
  assert.ok(Number(await took.getAttribute("data-duration-ms")) >= 1000, await took.textContent());
  result.bash_tool_ms = Number(await took.getAttribute("data-duration-ms"));
  await a.click(`[data-testid=transcript] details summary:has-text("Write")`);
  await a.screenshot({ path: join(shots, "agent-node.png"), fullPage: true });

  step("a fan-out is one node, its instances counted by status");
  await a.goto(`${url}/runs/${runFan}`);
  await a.waitForSelector(`.dag .node[data-node=review][data-fan-out="12"][data-status=running]`);
  assert.equal(await a.$$eval(".dag .node", (n) => n.length), 2, "twelve instances, one box");
  const counts = () => a.$eval(".dag .node[data-node=review] [data-testid=node-sub]", (t) =>
    Object.fromEntries([...t.querySelectorAll("tspan[data-count]")].map((s) => [s.dataset.count, s.textContent])));
  assert.deepEqual(await counts(), { success: "9 ✓", running: "2 running", failed: "1 ✗" });
  assert.ok((await a.textContent(".dag .node[data-node=review]")).includes("review ×12"), await a.textContent(".dag .node[data-node=review]"));

  step("its panel lists the instances; one opens its own logs");
  await a.click(".dag .node[data-node=review]");
  await a.waitForSelector(`[data-testid=instances] tr[data-instance="review[k9]"][data-status=failed]`);
  assert.equal(await a.$$eval("[data-testid=instances] tbody tr", (r) => r.length), 12);
  const row = await a.$$eval(`[data-testid=instances] tr[data-instance="review[k3]"] td`, (tds) => tds.map((td) => td.textContent));
  assert.deepEqual(row.slice(0, 3), ["k3", "3", "success"], JSON.stringify(row));
  assert.match(row[3], /^\d+(\.\d+)?(ms|s)$/, JSON.stringify(row));
  await a.click(`[data-testid=instances] tr[data-instance="review[k9]"]`);
  await a.waitForSelector(`pre[data-log="stdout.log"]:has-text("review of item 9 failed")`);
  assert.equal(await a.textContent("[data-testid=node-panel] h2"), "review[k9]");
  assert.ok((await a.textContent("[data-testid=failure]")).includes("exited with code 1"));
  assert.equal(await a.textContent("[data-testid=item]"), "9");
  assert.ok(new URL(a.url()).searchParams.get("node") === "review[k9]", a.url());
  await a.screenshot({ path: join(shots, "fan-out.png"), fullPage: true });

  step("the counts change live as the last instances settle");
  await a.click("[data-testid=fan-out-link]");
  await a.waitForSelector(`[data-testid=instances] tr[data-instance="review[k10]"][data-status=running]`);
  writeFileSync(goFlag, "");
  await a.waitForSelector(`[data-testid=instances] tr[data-instance="review[k11]"][data-status=success]`, { timeout: 60000 });
  await a.waitForSelector(".run-head .badge[data-status=success]", { timeout: 60000 });
  assert.deepEqual(await counts(), { success: "11 ✓", failed: "1 ✗" });
  assert.equal(await a.getAttribute(".dag .node[data-node=review]", "data-status"), "success");

  step("reject a gate in another run: a reason is required");
  await a.goto(`${url}/runs/${runReject}`);
  await a.waitForSelector(`.gate[data-gate=gate][data-waiting=true]`);
  await a.click(".gate[data-gate=gate] button[data-action=reject]");
  await a.waitForSelector(`.gate[data-gate=gate] .error-text:has-text("needs a reason")`);
  await a.fill(".gate[data-gate=gate] textarea", "not this week");
  await a.click(".gate[data-gate=gate] button[data-action=reject]");
  await a.waitForSelector(`.gate[data-answered=rejected]:has-text("not this week")`);
  await a.waitForSelector(".run-head .badge[data-status=failed]", { timeout: 60000 });
  await a.waitForSelector(".dag .node[data-node=deploy][data-status=skipped]");

  step("cancel a live run");
  await a.goto(`${url}/runs/${runLive}`);
  await a.waitForSelector(".dag .node[data-node=work][data-status=running]");
  await a.click("button[data-action=cancel]");
  await a.waitForSelector(".run-head .badge[data-status=cancelled]", { timeout: 60000 });
  await a.waitForSelector(".dag .node[data-node=work][data-status=cancelled]");

  step("resume a failed run and watch it finish live");
  await a.goto(`${url}/runs/${runFailed}`);
  await a.waitForSelector(".run-head .badge[data-status=failed]");
  await a.waitForSelector(".dag .node[data-node=check][data-status=failed]");
  const navigated = [];
  a.on("framenavigated", (f) => { if (f === a.mainFrame()) navigated.push(f.url()); });
  await a.click("button[data-action=resume]");
  await a.waitForSelector(".dag .node[data-node=check][data-status=running]");
  await a.waitForSelector(".run-head .badge[data-status=success]", { timeout: 60000 });
  await a.waitForSelector(".dag .node[data-node=check][data-status=success]");
  assert.equal(await a.getAttribute(".dag .node[data-node=prepare]", "data-status"), "success");

  step("resume it from a node and watch that node run again live");
  // Once the resuming process is gone, the page offers the resume again, without a reload.
  await a.waitForFunction(() => !document.querySelector(".run-head .facts").textContent.includes(" · pid "), null, { timeout: 30000 });
  await a.selectOption("select[aria-label='resume from node']", "check");
  await a.click("button[data-action=resume-from]");
  await a.waitForSelector(".dag .node[data-node=check][data-status=running]");
  await a.waitForSelector(".run-head .badge[data-status=success]", { timeout: 60000 });
  await a.waitForSelector(".dag .node[data-node=check][data-status=success]");
  assert.deepEqual(navigated, [], "the page never reloaded while resuming");
  await a.screenshot({ path: join(shots, "resumed-run.png"), fullPage: true });

  step("the run list agrees, live");
  await b.goto(url + "/");
  await b.waitForSelector(`tr[data-run="${runLive}"][data-status=cancelled]`);
  await b.waitForSelector(`tr[data-run="${runWaiting}"][data-status=success]`);
  assert.deepEqual(errors, [], "no script error on any page");
  console.log("RESULT " + JSON.stringify(result));
} catch (e) {
  console.error("FAILED:", e && e.stack || e);
  if (one) await one.page.screenshot({ path: join(shots, "failure.png"), fullPage: true }).catch(() => {});
  process.exitCode = 1;
} finally {
  if (one) await one.context.close().catch(() => {});
  if (two) await two.context.close().catch(() => {});
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}
