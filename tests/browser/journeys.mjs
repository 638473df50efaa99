// The patient portal's journeys in a real headless Chromium, each as a person would
// take it: open an account from an invitation; ask for a refill and see the clinician
// approve it; download the record and the International Patient Summary; allow another
// clinic to see the record and take it back (that clinic's clinician is checked over
// HTTP between the steps); a parent opens their child's record as a proxy.
// Usage: node tests/browser/journeys.mjs BASE ACTIVATION_PATH CLINICIAN CODE OTHER_COOKIE PROXY PASSWORD SHOTS
// Prints one JSON line: {"checks": [...]}; exits 1 on the first failed check.
import { chromium } from 'playwright-core';
import { readFileSync, existsSync } from 'node:fs';

const [base, activation, clinician, code, otherCookie, proxy, password, shots] = process.argv.slice(2);
const origin = new URL(base).origin;
const checks = [];
function check(ok, what) {
  checks.push(what);
  if (!ok) {
    console.error(`FAILED: ${what}`);
    process.exit(1);
  }
}

const axePath = 'node_modules/axe-core/axe.min.js';
const axeSource = existsSync(axePath) ? readFileSync(axePath, 'utf8') : null;
async function accessible(page, what) {
  check(axeSource !== null, `${what}: axe-core is installed (npm ci)`);
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id}: ${v.help} (${v.nodes.length})`);
  });
  check(result.length === 0, `${what}: no serious or critical accessibility problem ${JSON.stringify(result)}`);
}

// the other clinic's clinician, over HTTP: may they open the patient's chart?
async function otherClinicSees(patient) {
  const r = await fetch(`${base}/app/patient/${patient}`, { headers: { cookie: otherCookie }, redirect: 'manual' });
  return r.status;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu'],
});
const foreign = [];
function watch(page) {
  page.on('request', (r) => {
    if (new URL(r.url()).origin !== origin) foreign.push(r.url());
  });
}

try {
  // 1. an account from the invitation the clinic gave
  const patientCtx = await browser.newContext({ viewport: { width: 390, height: 844 }, acceptDownloads: true });
  const page = await patientCtx.newPage();
  watch(page);
  await page.goto(`${base}${activation}`);
  check(await page.getByRole('heading', { name: 'Your patient portal account' }).isVisible(), 'the invitation opens the account form');
  await accessible(page, 'activation');
  await page.fill('#username', 'ana.web');
  await page.fill('#password', password);
  await page.fill('#again', password);
  await page.getByRole('button', { name: 'Create my account' }).click();
  await page.waitForURL((u) => u.pathname === '/portal');
  check(await page.getByRole('heading', { name: 'Alvarez, Ana', level: 1 }).isVisible(), 'the new account opens the patient\'s own record');
  await page.screenshot({ path: `${shots}/journey-activated-phone.png`, fullPage: true });

  // 2. a refill asked for, approved by the clinician in their inbox
  await page.getByRole('button', { name: 'Request a refill' }).first().click();
  check(await page.getByText('waiting for your care team').isVisible(), 'the refill request waits');
  const staffCtx = await browser.newContext({ viewport: { width: 1366, height: 800 } });
  const staff = await staffCtx.newPage();
  watch(staff);
  await staff.goto(`${base}/app/inbox`);
  await staff.fill('#username', clinician);
  await staff.fill('#password', password);
  await staff.fill('#code', code);
  await staff.keyboard.press('Enter');
  await staff.waitForURL((u) => u.pathname === '/app/inbox');
  await staff.getByRole('link', { name: /Refill request: Salbutamol/ }).click();
  await staff.waitForURL(/\/review\//);
  await staff.getByRole('button', { name: 'Approve the refill' }).click();
  await staff.waitForLoadState();
  await page.reload();
  check((await page.textContent('main')).includes('approved'), 'the patient sees the refill approved');

  // 3. the record and the IPS downloaded
  const [record] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Download my record' }).click()]);
  const bundle = JSON.parse(readFileSync(await record.path(), 'utf8'));
  check(bundle.resourceType === 'Bundle' && bundle.entry.some((e) => e.resource.resourceType === 'Patient' && e.resource.id === 'pat-a'), 'the downloaded record is a Bundle of the patient');
  await page.goto(`${base}/portal/documents`);
  const [ips] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Download it for another health record' }).click()]);
  const doc = JSON.parse(readFileSync(await ips.path(), 'utf8'));
  check(doc.type === 'document' && doc.entry[0].resource.type.coding[0].code === '60591-5', 'the downloaded summary is an IPS document');

  // 4. shared with Clinic B, then taken back: its clinician gains and loses the chart
  check((await otherClinicSees('pat-a')) === 404, 'Clinic B does not see the record at first');
  await page.getByRole('link', { name: 'Sharing', exact: true }).click();
  await page.waitForURL(/\/portal\/sharing$/);
  await page.selectOption('#org', { label: 'Clinic B' });
  await page.getByRole('button', { name: 'Allow them to see my record' }).click();
  await page.waitForURL(/\/portal\/sharing$/);
  check((await page.textContent('main')).includes('you allowed them'), 'the permission is listed');
  check((await otherClinicSees('pat-a')) === 200, 'Clinic B\'s clinician now opens the chart');
  await page.screenshot({ path: `${shots}/journey-sharing-phone.png`, fullPage: true });
  await page.getByRole('button', { name: 'Stop sharing' }).click();
  await page.waitForURL(/\/portal\/sharing$/);
  check((await otherClinicSees('pat-a')) === 404, 'Clinic B\'s clinician loses the chart at once');
  await patientCtx.close();
  await staffCtx.close();

  // 5. a parent opens their child's record, and their own, one at a time
  const parentCtx = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const parent = await parentCtx.newPage();
  watch(parent);
  await parent.goto(`${base}/portal`);
  await parent.fill('#username', proxy);
  await parent.fill('#password', password);
  await parent.keyboard.press('Enter');
  await parent.waitForURL((u) => u.pathname === '/portal');
  check((await parent.textContent('main')).includes('on their behalf'), 'the proxy is told whose record is open');
  check(await parent.getByRole('heading', { name: 'Alvarez, Cleo', level: 1 }).isVisible(), 'the child\'s record is open');
  await parent.screenshot({ path: `${shots}/journey-proxy-phone.png`, fullPage: true });
  await parent.getByRole('link', { name: 'Switch record' }).click();
  await parent.waitForURL(/\/portal\/choose$/);
  await accessible(parent, 'switch record');
  await parent.getByRole('button', { name: 'Open the record of Alvarez, Ana' }).click();
  await parent.waitForURL((u) => u.pathname === '/portal');
  check(await parent.getByRole('heading', { name: 'Alvarez, Ana', level: 1 }).isVisible(), 'the other linked record opens');
  await parentCtx.close();

  check(foreign.length === 0, `no request left the origin ${JSON.stringify(foreign)}`);
} finally {
  await browser.close();
}
console.log(JSON.stringify({ checks }));
