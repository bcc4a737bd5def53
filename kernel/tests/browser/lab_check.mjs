// Drives a running JupyterLab in headless Chromium the way a person does: opens one
// notebook, waits for its kernel, chooses Run → Run All Cells in the menu bar, waits until
// the kernel is idle, and reports what the page shows. Called by kernel/tests/jupyterlab.rs,
// which starts JupyterLab, passes one JSON argument and checks the report:
//
//   node lab_check.mjs '{"url": "http://127.0.0.1:PORT", "token": "...",
//     "notebook": "x.ipynb", "kernelTimeout": 300, "runTimeout": 600,
//     "screenshots": "/dir", "name": "x", "chart": true, "kernel": "conclab"}'
//
// Progress goes to stderr; the last stdout line is the report, one JSON object:
// { ok, error, seconds: {open, kernel, run}, dialogs, cells: [...], screenshots: [...] }.
// A cell is { index, type, prompt, count, source, outputs: [...] }; an output is what the
// notebook model holds (outputType) beside what the page rendered for it (mime, classes,
// text, svg, svgImages, tables). JupyterLab renders `error` and stderr `stream` outputs
// alike, as `.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]`, so the
// model's output type tells them apart.
//
// The page reads JupyterLab's state through `window.jupyterapp`: the test starts the
// server with `--LabApp.expose_app_in_browser=True`. The kernel indicator in the
// toolbar says "idle" before the kernel has even started, so it cannot be trusted alone.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const config = JSON.parse(process.argv[2] ?? '{}');
const started = Date.now();
const elapsed = () => (Date.now() - started) / 1000;
const log = (...args) => console.error(`[lab_check ${config.name} ${elapsed().toFixed(1)} s]`, ...args);

const report = { ok: false, error: null, seconds: {}, dialogs: [], cells: [], screenshots: [] };

// Chromium's flags: without the background-networking ones Chromium tries to reach
// update and sync servers, which this closed network refuses, and stalls on them.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** JupyterLab's state for the notebook in the main area, read in the page. */
function labState(notebook) {
  const app = window.jupyterapp;
  const panel = app?.shell?.currentWidget;
  const path = panel?.context?.path ?? null;
  const context = panel?.sessionContext;
  const kernel = context?.session?.kernel;
  const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')].map(
    (p) => p.textContent.trim(),
  );
  return {
    app: !!app,
    path,
    notebook: path === notebook && !!panel?.content?.model,
    ready: !!context?.isReady,
    kernelName: kernel?.name ?? null,
    status: kernel?.status ?? null,
    connection: kernel?.connectionStatus ?? null,
    prompts,
    running: prompts.filter((p) => p.includes('*')).length,
    executed: prompts.filter((p) => /\[\d+\]/.test(p)).length,
    dialogs: [...document.querySelectorAll('.jp-Dialog')].map((d) => d.innerText.trim().slice(0, 500)),
  };
}

/** What every cell shows, with the model's outputs beside the rendered ones. */
function cellFacts() {
  const panel = window.jupyterapp.shell.currentWidget;
  const cells = [...panel.content.widgets];
  return cells.map((cell, index) => {
    const node = cell.node;
    const model = cell.model;
    const type = model.type;
    const fact = {
      index,
      type,
      prompt: node.querySelector('.jp-InputArea-prompt')?.textContent.trim() ?? '',
      count: type === 'code' ? model.executionCount ?? null : null,
      source: model.sharedModel.getSource().slice(0, 200),
      outputs: [],
    };
    if (type !== 'code') {
      return fact;
    }
    const modelOutputs = [];
    for (let i = 0; i < model.outputs.length; i++) {
      modelOutputs.push(model.outputs.get(i).toJSON());
    }
    const children = [...node.querySelectorAll('.jp-OutputArea-child')];
    const length = Math.max(modelOutputs.length, children.length);
    for (let i = 0; i < length; i++) {
      const json = modelOutputs[i] ?? {};
      const child = children[i];
      const rendered = child?.querySelector('.jp-OutputArea-output');
      const images = [...(child?.querySelectorAll('.jp-RenderedSVG img') ?? [])];
      fact.outputs.push({
        outputType: json.output_type ?? null,
        streamName: json.name ?? null,
        ename: json.ename ?? null,
        mimeTypes: Object.keys(json.data ?? {}),
        rendered: !!rendered,
        childClasses: child ? child.className : null,
        mime: rendered?.getAttribute('data-mime-type') ?? rendered?.querySelector('[data-mime-type]')?.getAttribute('data-mime-type') ?? null,
        classes: rendered ? rendered.className : null,
        text: (rendered?.innerText ?? '').slice(0, 2000),
        svg: child ? child.querySelectorAll('.jp-RenderedSVG svg').length : 0,
        svgImages: images.filter((img) => img.complete && img.naturalWidth > 0).length,
        brokenImages: images.filter((img) => !(img.complete && img.naturalWidth > 0)).length,
        tables: child ? child.querySelectorAll('.jp-RenderedHTMLCommon table').length : 0,
      });
    }
    return fact;
  });
}

async function waitFor(page, what, timeoutSeconds, test) {
  const deadline = Date.now() + timeoutSeconds * 1000;
  let lastLog = 0;
  for (;;) {
    const state = await page.evaluate(labState, config.notebook);
    if (state.dialogs.length) {
      report.dialogs.push(...state.dialogs);
      throw new Error(`a dialog appeared while waiting for ${what}: ${state.dialogs.join(' | ')}`);
    }
    if (test(state)) {
      return state;
    }
    if (Date.now() - lastLog > 10000) {
      lastLog = Date.now();
      log(`waiting for ${what}: kernel ${state.kernelName} ${state.status}/${state.connection},`,
        `${state.executed}/${state.prompts.length} code cells have a count, ${state.running} queued or running`);
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutSeconds} s waiting for ${what}; last state ${JSON.stringify(state)}`);
    }
    await page.waitForTimeout(500);
  }
}

async function screenshot(target, file) {
  const full = path.join(config.screenshots, file);
  await target.screenshot({ path: full });
  report.screenshots.push(full);
  log('screenshot', full);
}

async function main(page) {
  // `reset`: a fresh workspace, not the tabs an earlier scenario left open on this server.
  const url = `${config.url}/lab/tree/${encodeURI(config.notebook)}?reset&token=${config.token ?? ''}`;
  log('opening', url.replace(/token=.*/, 'token=…'));
  await page.goto(url);
  await page.waitForSelector('.jp-Notebook .jp-Cell', { timeout: 120000 });
  await waitFor(page, 'the notebook', 120, (s) => s.app && s.notebook);
  report.seconds.open = elapsed();
  log('notebook open');

  // A first kernel start loads and builds the conclab crate: 15 to 70 s on a loaded
  // machine, so wait for the kernel's state, not for a fixed time.
  const kernelStart = Date.now();
  const ready = await waitFor(page, 'the kernel to be idle', config.kernelTimeout ?? 300,
    (s) => s.ready && s.status === 'idle' && s.connection === 'connected');
  report.seconds.kernel = (Date.now() - kernelStart) / 1000;
  log(`kernel ${ready.kernelName} idle after ${report.seconds.kernel.toFixed(1)} s`);
  const kernelName = config.kernel ?? 'conclab';
  if (ready.kernelName !== kernelName) {
    throw new Error(`the notebook runs in kernel ${ready.kernelName}, not ${kernelName}`);
  }

  // Run → Run All Cells, as a person chooses it.
  const before = JSON.stringify(ready.prompts);
  await page.click('.lm-MenuBar-itemLabel:text-is("Run")');
  await page.click('.lm-Menu-itemLabel:text-is("Run All Cells")');
  const runStart = Date.now();
  log('chose Run → Run All Cells');
  // Started: some cell is queued or running, or a prompt changed; finished: the kernel is idle, no
  // cell is queued or running, and that held for 2 s (Run All queues every cell at once,
  // and after a failure the kernel answers the rest with `aborted`, which clears their
  // `[*]`).
  await waitFor(page, 'the run to start', 60, (s) => s.running > 0 || s.status === 'busy' || JSON.stringify(s.prompts) !== before,
  );
  let calm = 0;
  await waitFor(page, 'the run to finish', config.runTimeout ?? 600, (s) => {
    calm = s.status === 'idle' && s.connection === 'connected' && s.running === 0 ? calm + 1 : 0;
    return calm >= 4;
  });
  report.seconds.run = (Date.now() - runStart) / 1000;
  log(`run finished after ${report.seconds.run.toFixed(1)} s`);
  // Let the last outputs render (SVG images decode asynchronously).
  await page.waitForTimeout(1000);
  report.cells = await page.evaluate(cellFacts);

  await screenshot(page, `${config.name}.png`);
  if (config.chart) {
    const chart = page.locator('.jp-Notebook .jp-Cell:has(.jp-RenderedSVG)').first();
    if ((await chart.count()) > 0) {
      await chart.scrollIntoViewIfNeeded();
      await screenshot(chart, `${config.name}-chart.png`);
      await screenshot(page, `${config.name}-chart-page.png`);
    }
  }
  report.ok = true;
}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'conclab-lab-chromium-'));
let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: config.chromium ?? '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1400, height: 1000 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (message) => {
    if (message.type() === 'error') {
      log('page console error:', message.text().slice(0, 300));
    }
  });
  page.on('pageerror', (error) => log('page error:', String(error).slice(0, 300)));
  try {
    await main(page);
  } catch (error) {
    report.error = String(error?.stack ?? error);
    log('failed:', report.error);
    try {
      report.cells = await page.evaluate(cellFacts);
    } catch {
      // the page may not have a notebook at all
    }
    try {
      report.pageText = (await page.evaluate(() => document.body.innerText)).slice(0, 4000);
      await screenshot(page, `${config.name}-failure.png`);
    } catch {
      // nothing more to show
    }
  }
} catch (error) {
  report.error = `Chromium did not start: ${error?.stack ?? error}`;
} finally {
  report.seconds.total = elapsed();
  await context?.close().catch(() => {});
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
console.log(JSON.stringify(report));
process.exit(report.ok ? 0 : 1);
