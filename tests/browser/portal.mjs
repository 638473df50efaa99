// The patient portal in a real headless Chromium: a patient signs in, reads their
// record, their results and who has seen the record, at laptop and phone sizes; no
// request leaves the origin and axe-core finds no serious or critical problem.
// Usage: node tests/browser/portal.mjs BASE USERNAME PASSWORD SCREENSHOT_DIR
import { chromium } from 'playwright-core';
import { readFileSync } from 'node:fs';

const [base, username, password, shots] = process.argv.slice(2);
const origin = new URL(base).origin;
const checks = [];
function check(ok, what) {
  checks.push(what);
  if (!ok) {
    console.error(`FAILED: ${what}`);
    process.exit(1);
  }
}
// whether a locator shows within five seconds (a page may still be settling)
const visible = (locator) => locator.waitFor({ state: 'visible', timeout: 5000 }).then(() => true, () => false);
const axeSource = readFileSync('node_modules/axe-core/axe.min.js', 'utf8');
async function accessible(page, what) {
  await page.evaluate(axeSource);
  const found = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id}: ${v.help}`);
  });
  check(found.length === 0, `${what}: no serious or critical accessibility problem ${JSON.stringify(found)}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu'],
});
const foreign = [];
try {
  const laptop = await browser.newContext({ viewport: { width: 1366, height: 800 } });
  const page = await laptop.newPage();
  page.on('request', (r) => {
    if (new URL(r.url()).origin !== origin) foreign.push(r.url());
  });
  await page.goto(`${base}/portal`);
  check(new URL(page.url()).pathname === '/auth/login', 'a patient without a session is sent to sign in');
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.keyboard.press('Enter');
  await page.waitForURL((u) => u.pathname === '/portal');
  await page.screenshot({ path: `${shots}/portal-record-laptop.png`, fullPage: true });
  check(await visible(page.getByRole('heading', { name: 'Alvarez, Ana', level: 1 })), 'the patient sees their name');
  check((await page.textContent('main')).includes('Penicillin G'), 'and their allergy');
  await page.screenshot({ path: `${shots}/portal-record-laptop.png`, fullPage: true });
  await accessible(page, 'my record');
  // ask for a refill: the request shows as waiting
  await page.getByRole('button', { name: 'Request a refill' }).first().click();
  check(await visible(page.getByText('waiting for your care team')), 'a refill request waits for the care team');
  await page.screenshot({ path: `${shots}/portal-refill-laptop.png`, fullPage: true });
  // write to the care team
  await page.getByRole('link', { name: 'Messages' }).click();
  await page.waitForURL((u) => u.pathname === '/portal/messages');
  await page.fill('#topic', 'Question about my inhaler');
  await page.fill('#text', 'Can I use it before running?');
  // a picture goes with it: the one the test server's first Binary holds
  const picture = await page.evaluate(async () => {
    const r = await fetch('/portal/document/DiagnosticReport/rad-a/attachment/0');
    return Array.from(new Uint8Array(await r.arrayBuffer()));
  });
  await page.setInputFiles('#file', { name: 'inhaler.png', mimeType: 'image/png', buffer: Buffer.from(picture) });
  await accessible(page, 'messages');
  await page.getByRole('button', { name: 'Send' }).click();
  await page.waitForURL(/\/portal\/messages\/.+/);
  check((await page.textContent('main')).includes('Can I use it before running?'), 'the message is in its conversation');
  check(await page.locator('img.thumb').evaluate((img) => img.complete && img.naturalWidth > 0), 'the picture sent is shown in the conversation');
  await page.screenshot({ path: `${shots}/portal-message-laptop.png`, fullPage: true });
  await accessible(page, 'a conversation');
  await page.getByRole('link', { name: 'My results' }).click();
  await page.waitForURL(/\/portal\/results$/);
  check(await visible(page.getByRole('img', { name: /^Hemoglobin A1c: 2 readings/ })), 'the HbA1c trend is drawn');
  await accessible(page, 'my results');
  await page.getByRole('link', { name: 'Who has seen my record' }).click();
  await page.waitForURL(/\/portal\/access$/);
  await page.screenshot({ path: `${shots}/portal-access-laptop.png`, fullPage: true });
  await accessible(page, 'who has seen my record');
  // documents, and the health summary to print
  await page.getByRole('link', { name: 'Documents', exact: true }).click();
  await page.waitForURL(/\/portal\/documents$/);
  check((await page.textContent('main')).includes('Chest X-ray'), 'the patient sees their imaging report');
  await accessible(page, 'my documents');
  await page.screenshot({ path: `${shots}/portal-documents-laptop.png`, fullPage: true });
  await page.getByRole('link', { name: 'Chest X-ray' }).click();
  await page.waitForURL(/\/portal\/document\/DiagnosticReport\//);
  check(await page.locator('img.attachment').evaluate((img) => img.complete && img.naturalWidth > 0), 'the report\'s picture is shown');
  await accessible(page, 'a document');
  await page.goto(`${base}/portal/documents`);
  await page.getByRole('link', { name: 'Open my health summary' }).click();
  await page.waitForURL(/\/portal\/summary$/);
  check(await visible(page.getByRole('heading', { name: 'Allergies and intolerances' })), 'the summary lists the allergies');
  await accessible(page, 'health summary');
  await page.emulateMedia({ media: 'print' });
  await page.screenshot({ path: `${shots}/portal-summary-print.png`, fullPage: true });
  check(!(await page.locator('header.top').isVisible()), 'the printed summary has no navigation');
  await page.emulateMedia({ media: 'screen' });
  await page.getByRole('link', { name: 'Sharing', exact: true }).click();
  await page.waitForURL(/\/portal\/sharing$/);
  check((await page.textContent('main')).includes('Clinic A'), 'the patient sees who keeps their record');
  await accessible(page, 'sharing');
  await page.screenshot({ path: `${shots}/portal-sharing-laptop.png`, fullPage: true });
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, storageState: await laptop.storageState() });
  const small = await phone.newPage();
  for (const [path, shot] of [
    ['/portal', 'portal-record-phone.png'],
    ['/portal/results', 'portal-results-phone.png'],
    ['/portal/documents', 'portal-documents-phone.png'],
    ['/portal/summary', 'portal-summary-phone.png'],
    ['/portal/apps', 'portal-apps-phone.png'],
    ['/portal/sharing', 'portal-sharing-phone.png'],
  ]) {
    await small.goto(`${base}${path}`);
    await small.screenshot({ path: `${shots}/${shot}`, fullPage: true });
    const overflow = await small.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
    check(!overflow, `phone: ${path} fits the width`);
  }
  await phone.close();
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/auth\/login/);
  check(true, 'signing out leads to the sign-in page');
  check(foreign.length === 0, `no request left the origin ${JSON.stringify(foreign)}`);
} finally {
  await browser.close();
}
console.log(JSON.stringify({ checks }));
