// The patient portal's journeys in a real headless Chromium, each as a person would
// take it: open an account from an invitation; ask for a refill and see the clinician
// approve it; download the record and the International Patient Summary; allow another
// clinic to see the record and take it back (that clinic's clinician is checked over
// HTTP between the steps); write to the care team and read the clinician's answer;
// connect a SMART app and disconnect it; a parent opens their child's record as a proxy.
// Usage: node tests/browser/journeys.mjs BASE ACTIVATION_PATH CLINICIAN CODE OTHER_COOKIE PROXY PASSWORD SHOTS
// Prints one JSON line: {"checks": [...]}; exits 1 on the first failed check.
import { chromium } from 'playwright-core';
import { readFileSync, existsSync } from 'node:fs';
import { createHash } from 'node:crypto';

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

  // 2b. a message to the care team, answered by the clinician
  await page.getByRole('link', { name: 'Messages', exact: true }).click();
  await page.waitForURL(/\/portal\/messages$/);
  await page.fill('#topic', 'Inhaler before running?');
  await page.fill('#text', 'May I use it before I run?');
  await page.getByRole('button', { name: 'Send' }).click();
  await page.waitForURL(/\/portal\/messages\/.+/);
  const thread = new URL(page.url()).pathname;
  await staff.goto(`${base}/app/inbox`);
  await staff.getByRole('link', { name: /Inhaler before running\?/ }).first().click();
  await staff.waitForURL(/\/messages\//);
  check((await staff.textContent('main')).includes('May I use it before I run?'), 'the clinician reads the message');
  await staff.fill('#text', 'Yes: two puffs 15 minutes before.');
  await staff.getByRole('button', { name: 'Send the reply' }).click();
  await staff.waitForURL(/\/app\/inbox/);
  await page.goto(`${base}${thread}`);
  check((await page.textContent('main')).includes('Yes: two puffs 15 minutes before.'), 'the patient reads the answer');

  // 3. the record and the IPS downloaded
  await page.goto(`${base}/portal`);
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
  // 4b. a SMART app connected (authorized in the browser, its code exchanged by the app),
  // then disconnected: its refresh token stops working
  const verifier = 'journey-verifier-0123456789abcdefghijklmnopqrstuvwxyz';
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const redirect = `${base}/portal/apps`;
  const q = new URLSearchParams({
    response_type: 'code', client_id: 'diary', redirect_uri: redirect, scope: 'patient/*.rs launch/patient offline_access',
    state: 'j1', aud: `${base}/fhir`, code_challenge: challenge, code_challenge_method: 'S256',
  });
  await page.goto(`${base}/auth/authorize?${q}`);
  await page.getByRole('button', { name: 'Allow', exact: true }).click();
  await page.waitForURL((u) => u.pathname === '/portal/apps' && u.searchParams.has('code'));
  const authCode = new URL(page.url()).searchParams.get('code');
  const token = await (await fetch(`${base}/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code: authCode, redirect_uri: redirect, client_id: 'diary', code_verifier: verifier }),
  })).json();
  check(typeof token.refresh_token === 'string', 'the app got its tokens');
  await page.goto(`${base}/portal/apps`);
  check((await page.textContent('main')).includes('Walking Diary'), 'the app is listed as connected');
  await accessible(page, 'connected apps');
  await page.screenshot({ path: `${shots}/journey-apps-phone.png`, fullPage: true });
  await page.getByRole('button', { name: 'Disconnect' }).click();
  check((await page.textContent('main')).includes('No app is connected'), 'the app is disconnected');
  const refused = await fetch(`${base}/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: token.refresh_token, client_id: 'diary' }),
  });
  check(refused.status === 400, 'the disconnected app\'s refresh token is refused');
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
