// Drives headless Chromium through the admin console and prints one JSON
// line with what it saw, for tests/tests/console.rs to check. Environment:
//   CONSOLE_URL  the console (http://127.0.0.1:<admin port>/admin/)
//   ADMIN_TOKEN  the admin token
//   CLOSE_SUBJECT  the subject whose session to close with the keyboard
//   SCREENSHOT   where to write a PNG of the whole page
//   CHROMIUM     the browser (default /usr/bin/chromium)
import { chromium } from 'playwright-core';

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};

const url = env('CONSOLE_URL');
const token = env('ADMIN_TOKEN');
const closeSubject = env('CLOSE_SUBJECT');
const screenshot = env('SCREENSHOT');

const browser = await chromium.launch({
  executablePath: env('CHROMIUM', '/usr/bin/chromium'),
  headless: true,
  // The machine has no network: without these Chromium keeps dialling out.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const report = { requests: [], consoleErrors: [], dialogs: [] };
try {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  page.on('request', (r) => report.requests.push(new URL(r.url()).host));
  page.on('console', (m) => { if (m.type() === 'error') report.consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => report.consoleErrors.push(String(e)));
  page.on('dialog', (d) => { report.dialogs.push(d.message()); d.accept(); });

  const response = await page.goto(url);
  report.csp = response.headers()['content-security-policy'] ?? null;

  // Every form control has a label.
  report.unlabelled = await page.$$eval('input, select', (els) =>
    els.filter((el) => !document.querySelector(`label[for="${el.id}"]`)).map((el) => el.id || el.name));

  // A wrong token is refused and the console stays closed.
  await page.fill('#token', 'not-the-admin-token-000');
  await page.press('#token', 'Enter');
  await page.waitForFunction(() => document.getElementById('status').textContent.includes('not accepted'));
  report.wrongToken = {
    status: await page.textContent('#status'),
    consoleHidden: await page.isHidden('#console'),
    // Chromium logs the refused call (401) as an error; keep those apart.
    errors: report.consoleErrors.splice(0),
  };

  // The right token opens it; wait for a complete refresh.
  await page.fill('#token', token);
  await page.press('#token', 'Enter');
  await page.waitForSelector('body[data-loaded]');

  const rows = (selector) => page.$$eval(`${selector} tbody tr`, (trs) =>
    trs.map((tr) => [...tr.children].map((c) => c.textContent.trim())));
  report.pools = await rows('#pools');
  report.sessionsBefore = await rows('#sessions');
  report.htmlInCells = await page.$$eval('#sessions tbody td *:not(button)', (els) => els.map((e) => e.tagName));
  report.bars = await page.$$eval('#usage-chart rect', (rects) => rects.length);
  report.caption = await page.textContent('#usage-caption');

  // Close one session with the keyboard only: focus its button, press Enter.
  const button = page.getByRole('button', { name: `Close the session of ${closeSubject}`, exact: false });
  await button.focus();
  await page.keyboard.press('Enter');
  await page.waitForFunction((subject) =>
    ![...document.querySelectorAll('#sessions tbody tr td:first-child')].some((td) => td.textContent === subject),
  closeSubject);
  await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('Closed'));
  report.statusAfterClose = await page.textContent('#status');
  report.sessionsAfter = await rows('#sessions');
  report.audit = await rows('#audit');

  await page.screenshot({ path: screenshot, fullPage: true });
  report.requests = [...new Set(report.requests)];
  process.stdout.write(JSON.stringify(report) + '\n');
} finally {
  await browser.close();
}
