// The clinician application in a real headless Chromium: sign in with a second factor,
// find a patient, read the chart, sign out; at laptop size, then the same pages at
// phone size in the same session. No request may leave the server's origin, no stored
// script may run, and axe-core (when installed) finds no serious or critical problem.
// Usage: node tests/browser/chart.mjs BASE USERNAME PASSWORD TOTP_CODE SCREENSHOT_DIR
// Prints one JSON line: {"checks": [...]}; exits 1 on the first failed check.
import { chromium } from 'playwright-core';
import { readFileSync, existsSync } from 'node:fs';

const [base, username, password, code, shots] = process.argv.slice(2);
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
  if (!axeSource) {
    check(false, `${what}: axe-core is installed (npm ci)`);
  }
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id}: ${v.help} (${v.nodes.length})`);
  });
  check(result.length === 0, `${what}: no serious or critical accessibility problem ${JSON.stringify(result)}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu'],
});
const foreign = [];
const dialogs = [];
function watch(page) {
  page.on('request', (r) => {
    if (new URL(r.url()).origin !== origin) foreign.push(r.url());
  });
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    d.dismiss();
  });
}

try {
  const laptop = await browser.newContext({ viewport: { width: 1366, height: 800 } });
  const page = await laptop.newPage();
  watch(page);

  // no session: to the sign-in page, and back to the page asked for after
  await page.goto(`${base}/app`);
  check(new URL(page.url()).pathname === '/auth/login', 'an unsigned browser is sent to sign in');
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.fill('#code', code);
  await page.keyboard.press('Enter');
  await page.waitForURL((u) => u.pathname === '/app');
  check(true, 'signing in with the second factor leads to the application');

  // find a patient: the box has the focus; type, Enter
  const focused = await page.waitForSelector('#q:focus', { timeout: 3000 }).then(() => true, () => false);
  check(focused, 'the search box has the focus');
  check(await page.getByRole('heading', { name: /My patients/ }).isVisible(), '"My patients" is shown');
  await page.keyboard.type('alvarez');
  await page.keyboard.press('Enter');
  await page.waitForURL(/\/app\?q=alvarez/);
  const link = page.getByRole('link', { name: 'Alvarez, Ana' });
  check(await link.isVisible(), 'the patient is found by name');
  await page.screenshot({ path: `${shots}/app-find-laptop.png`, fullPage: true });
  await accessible(page, 'find');

  // a date that is not one: a message next to the field, the text kept
  await page.fill('#q', '1980-13-01');
  await page.keyboard.press('Enter');
  await page.waitForLoadState();
  check((await page.getByRole('alert').textContent()).includes('is not a date'), 'a bad date gets a message');
  check((await page.inputValue('#q')) === '1980-13-01', 'the text typed is kept');

  // the chart
  await page.fill('#q', 'MRN-4711');
  await page.keyboard.press('Enter');
  await page.getByRole('link', { name: 'Alvarez, Ana' }).click();
  await page.waitForURL(/\/app\/patient\/pat-a$/);
  check(await page.getByRole('heading', { name: 'Alvarez, Ana', level: 1 }).isVisible(), 'the chart names the patient');
  const allergies = page.locator('section.allergies');
  check((await allergies.textContent()).includes('Penicillin G'), 'the allergy is on the chart');
  check(await allergies.locator('.crit.high').isVisible(), 'its high criticality is marked');
  const top = await allergies.boundingBox();
  check(top && top.y < 400, 'the allergies are near the top');
  check((await page.locator('#labs-h + table').textContent()).includes('Hemoglobin A1c'), 'the lab result is listed');
  check(await page.locator('tr.abnormal .flag.H').isVisible(), 'the high result is flagged');
  check((await page.locator('.vitals').textContent()).includes('128/84'), 'the blood pressure reads as 128/84');
  check((await page.locator('#problems-h ~ ul').textContent()).includes('<script>'), 'stored markup shows as text');
  check(await page.evaluate(() => window.__xss === undefined), 'no stored script ran');
  await page.screenshot({ path: `${shots}/app-chart-laptop.png`, fullPage: true });
  await accessible(page, 'chart');
  // printed, the summary is the record without the application around it
  await page.emulateMedia({ media: 'print' });
  check(!(await page.locator('header.top').isVisible()) && !(await page.locator('nav.tabs').isVisible()), 'the printed summary has no navigation');
  check(await page.locator('section.allergies').isVisible(), 'the printed summary keeps the allergies');
  check((await page.locator('footer.print-only').textContent()).includes('Printed from Hale on'), 'the printed summary says when and by whom');
  await page.screenshot({ path: `${shots}/app-chart-print.png`, fullPage: true });
  await page.emulateMedia({ media: 'screen' });

  // the chart's other pages, by their tabs
  await page.getByRole('link', { name: 'Vital signs' }).click();
  await page.waitForURL(/\/vitals$/);
  check(await page.getByRole('img', { name: /^Blood pressure: 2 readings/ }).isVisible(), 'the blood pressure chart is drawn');
  await page.screenshot({ path: `${shots}/app-vitals-laptop.png`, fullPage: true });
  await accessible(page, 'vitals');
  // record vital signs: a wrong value gets a message by its field and is kept
  await page.getByRole('link', { name: 'Record vital signs' }).click();
  await page.waitForURL(/\/vitals\/new$/);
  await page.fill('#pulse', '720');
  await page.fill('#systolic', '121');
  await page.fill('#diastolic', '79');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.waitForLoadState();
  check((await page.locator('#pulse-error').textContent()).includes('outside what is plausible'), 'an implausible pulse gets a message');
  check((await page.inputValue('#systolic')) === '121', 'the other values are kept');
  await page.screenshot({ path: `${shots}/app-record-error-laptop.png`, fullPage: true });
  await accessible(page, 'record vitals');
  await page.fill('#pulse', '72');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.waitForURL(/\/vitals\?recorded=2$/);
  check((await page.getByRole('status').textContent()).includes('Recorded 2 readings'), 'the readings are recorded');
  check(await page.getByRole('img', { name: /^Blood pressure: 3 readings/ }).isVisible(), 'the new reading is on the chart');
  await page.getByRole('link', { name: 'Results' }).click();
  await page.waitForURL(/\/results$/);
  check(await page.getByRole('img', { name: /^Hemoglobin A1c: 2 readings/ }).isVisible(), 'the HbA1c trend is drawn');
  await page.screenshot({ path: `${shots}/app-results-laptop.png`, fullPage: true });
  await accessible(page, 'results');
  await page.getByRole('link', { name: 'Summary' }).click();
  await page.waitForURL(/\/app\/patient\/pat-a$/);

  // a problem from the table, found by its code
  await page.getByRole('link', { name: 'Add a problem' }).click();
  await page.fill('#q', 'E11');
  await page.keyboard.press('Enter');
  await page.waitForURL(/problems\/new\?q=E11/);
  await page.fill('#onset', '2019-04');
  await page.screenshot({ path: `${shots}/app-problem-laptop.png`, fullPage: true });
  await accessible(page, 'add a problem');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.waitForURL(/\/app\/patient\/pat-a$/);
  check((await page.locator('#problems-h ~ ul').textContent()).includes('Type 2 diabetes mellitus'), 'the problem is on the chart');

  // a laboratory order, its result by hand, the clinician's inbox, the review
  await page.getByRole('link', { name: 'Order a test' }).click();
  await page.selectOption('#test', '4548-4');
  await page.getByRole('button', { name: 'Order' }).click();
  await page.waitForURL(/\/app\/patient\/pat-a$/);
  await page.getByRole('link', { name: 'Enter the result' }).click();
  await page.fill('[id="4548-4"]', '8.4');
  await accessible(page, 'enter a result');
  await page.getByRole('button', { name: 'Save the result' }).click();
  await page.waitForURL(/\/results$/);
  check((await page.locator('.analyte').first().textContent()).includes('8.4 %'), 'the entered result is on the results page');
  await page.getByRole('link', { name: 'Inbox' }).click();
  await page.waitForURL(/\/app\/inbox$/);
  check(await page.getByRole('heading', { name: 'Inbox (1)' }).isVisible(), 'the result waits in the inbox');
  await page.screenshot({ path: `${shots}/app-inbox-laptop.png`, fullPage: true });
  await accessible(page, 'inbox');
  await page.getByRole('link', { name: /Hemoglobin A1c for Alvarez, Ana/ }).click();
  await page.waitForURL(/\/review\//);
  await accessible(page, 'review');
  await page.getByRole('button', { name: 'Mark as reviewed' }).click();
  await page.waitForURL(/\/app\/inbox$/);
  check((await page.textContent('main')).includes('Nothing waits for you.'), 'reviewed, it leaves the inbox');
  await page.goto(`${base}/app/patient/pat-a`);

  // a visit: start it, write the note, sign it
  await page.getByRole('button', { name: 'Start a visit' }).click();
  await page.waitForURL(/\/visit\//);
  await page.fill('#subjective', 'Cough for three days.');
  await page.fill('#assessment', 'Viral bronchitis.');
  await page.fill('#plan', 'Fluids; review in a week.');
  await page.getByRole('button', { name: 'Sign the note' }).click();
  const signedBadge = await page.locator('#note-h .badge.ok').waitFor({ timeout: 5000 }).then(() => true, () => false);
  check(signedBadge && (await page.locator('#note-h').textContent()).includes('signed'), 'the note is signed');
  await page.screenshot({ path: `${shots}/app-visit-laptop.png`, fullPage: true });
  await accessible(page, 'visit');
  const visitUrl = page.url();
  await page.goto(`${base}/app/patient/pat-a`);

  // prescribe: the allergy warning before signing; signing past it needs a reason
  await page.getByRole('link', { name: 'Prescribe' }).click();
  await page.waitForURL(/\/prescribe$/);
  await page.fill('#q', 'amox 500');
  await page.keyboard.press('Enter');
  await page.getByRole('link', { name: 'amoxicillin 500 MG Oral Capsule' }).click();
  await page.waitForURL(/\/prescribe\?drug=/);
  const alertText = await page.locator('.alert.high').textContent();
  check(alertText.includes('amoxicillin is a penicillin'), 'the penicillin allergy is shown before signing');
  await page.selectOption('#frequency', 'tid');
  await page.fill('#days', '10');
  await page.fill('#quantity', '30');
  await page.screenshot({ path: `${shots}/app-prescribe-laptop.png`, fullPage: true });
  await accessible(page, 'prescribe');
  await page.getByRole('button', { name: 'Sign prescription' }).click();
  await page.waitForLoadState();
  check((await page.locator('#override-error').textContent()).includes('Give the reason'), 'signing past the alert needs a reason');
  check((await page.inputValue('#quantity')) === '30', 'the order is kept');
  await page.fill('#override', 'tolerated amoxicillin in 2024 without reaction');
  await page.getByRole('button', { name: 'Sign prescription' }).click();
  await page.waitForURL(/\/prescription\//);
  check(await page.getByRole('heading', { name: 'Prescription' }).isVisible(), 'the prescription is shown to print');
  await page.emulateMedia({ media: 'print' });
  await page.screenshot({ path: `${shots}/app-prescription-print.png`, fullPage: true });
  check(!(await page.locator('header.top').isVisible()), 'the printed prescription has no navigation');
  await page.emulateMedia({ media: 'screen' });
  await page.goto(`${base}/app/patient/pat-a`);

  // preventive care due across the clinician's patients
  await page.getByRole('link', { name: 'Due', exact: true }).click();
  await page.waitForURL(/\/app\/due$/);
  check((await page.textContent('main')).includes('Alvarez, Ana'), 'the panel lists the patient');
  await page.screenshot({ path: `${shots}/app-due-laptop.png`, fullPage: true });
  await accessible(page, 'preventive care due');
  // narrowed to one rule, from the filter above the list
  await page.selectOption('#rule', 'td-booster');
  await page.getByRole('button', { name: 'Show', exact: true }).click();
  await page.waitForURL(/\/app\/due\?rule=td-booster(&|$)/);
  check((await page.textContent('h1')).includes('Tetanus and diphtheria booster'), 'the list names the rule it is narrowed to');
  check(!(await page.textContent('tbody')).includes('Blood pressure'), 'only the chosen rule is listed');
  await page.screenshot({ path: `${shots}/app-due-filtered-laptop.png`, fullPage: true });
  await accessible(page, 'preventive care due, one rule');
  // reminders to the patients ticked (all of them, by default), as portal messages
  check(await page.getByRole('checkbox', { name: 'Remind Alvarez, Ana' }).isChecked(), 'each patient due is ticked');
  await page.getByRole('button', { name: /Send a reminder to the patients ticked/ }).click();
  await page.waitForURL(/\/app\/due\/remind$/);
  check((await page.textContent('[role=status]')).includes('Reminder sent to 1 patient'), 'the worklist says who was reminded');
  await page.screenshot({ path: `${shots}/app-due-reminded-laptop.png`, fullPage: true });
  await accessible(page, 'preventive care due, reminders sent');

  // quality measures: each measure's rate over time, the patients of each group (the
  // one to act on open), another period asked for with the form
  await page.getByRole('link', { name: 'Measures', exact: true }).click();
  await page.waitForURL(/\/app\/measures$/);
  check(await page.getByRole('heading', { name: /Quality measures/ }).isVisible(), 'the measures page opens');
  check((await page.locator('table.measures tbody tr').count()) === 7, 'each of the seven measures has a row of rates');
  check((await page.locator('table.measures thead th').count()) === 8, 'four earlier periods and this one, counts and direction');
  check(await page.locator('#cms147-influenza-immunization svg.chart').isVisible(), 'a measure\'s rate over time is drawn');
  const toAct = page.locator('#cms130-colorectal-cancer-screening-not-met');
  check(await toAct.evaluate((d) => d.open), 'the group to act on is open');
  check((await toAct.textContent()).includes('Alvarez, Ana'), 'the patient to act on is named');
  const met = page.locator('#cms130-colorectal-cancer-screening-met');
  check(!(await met.evaluate((d) => d.open)), 'the other groups are closed');
  await met.locator('summary').click();
  check(await met.evaluate((d) => d.open), 'a group opens without script of ours');
  await page.screenshot({ path: `${shots}/app-measures-laptop.png`, fullPage: true });
  await accessible(page, 'quality measures');
  await page.fill('#m-start', '2024-01-01');
  await page.fill('#m-end', '2024-12-31');
  await page.getByRole('button', { name: 'Measure', exact: true }).click();
  await page.waitForURL(/\/app\/measures\?start=2024-01-01&end=2024-12-31$/);
  check((await page.textContent('main')).includes('From 2024-01-01 to 2024-12-31'), 'the period asked for is measured');
  await page.goto(`${base}/app/patient/pat-a`);

  // the reconciliation form (read, not saved here)
  await page.getByRole('link', { name: 'Reconcile' }).click();
  await page.waitForURL(/\/medications\/reconcile$/);
  await page.screenshot({ path: `${shots}/app-reconcile-laptop.png`, fullPage: true });
  await accessible(page, 'reconcile medications');
  await page.goto(`${base}/app/patient/pat-a`);

  // documents and reports: the imaging report's picture is shown; a scanned letter is
  // added from a file and opens as a PDF
  await page.getByRole('link', { name: 'Documents', exact: true }).click();
  await page.waitForURL(/\/documents$/);
  check((await page.textContent('main')).includes('Chest X-ray'), 'the imaging report is listed');
  await page.screenshot({ path: `${shots}/app-documents-laptop.png`, fullPage: true });
  await accessible(page, 'documents');
  await page.getByRole('link', { name: 'Chest X-ray' }).click();
  await page.waitForURL(/\/document\/DiagnosticReport\/rad-a$/);
  const shown = await page.locator('img.attachment').evaluate((img) => img.complete && img.naturalWidth > 0);
  check(shown, 'the report\'s image is shown');
  await page.screenshot({ path: `${shots}/app-report-laptop.png`, fullPage: true });
  await accessible(page, 'a report');
  await page.goto(`${base}/app/patient/pat-a/documents`);
  await page.getByRole('link', { name: 'Add a document' }).click();
  await page.waitForURL(/\/documents\/new$/);
  await accessible(page, 'add a document');
  await page.fill('#title', 'Letter from the cardiology clinic');
  await page.selectOption('#kind', '11488-4');
  await page.setInputFiles('#file', { name: 'letter.pdf', mimeType: 'application/pdf', buffer: Buffer.from('%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n') });
  await page.getByRole('button', { name: 'Add', exact: true }).click();
  await page.waitForURL(/\/document\/DocumentReference\//);
  check(await page.getByRole('heading', { name: 'Letter from the cardiology clinic' }).isVisible(), 'the added document opens');
  check(await page.getByRole('link', { name: 'Open the PDF' }).isVisible(), 'its PDF can be opened');
  await page.screenshot({ path: `${shots}/app-document-added-laptop.png`, fullPage: true });
  await page.goto(`${base}/app/patient/pat-a`);

  // a child's growth against the WHO percentiles for age and sex
  await page.goto(`${base}/app/patient/pat-k/vitals`);
  check((await page.locator('svg.chart polyline.guide').count()) === 10, 'five percentile lines on the weight and the height charts');
  check((await page.textContent('main')).includes('For age (WHO)'), 'each reading has its percentile');
  await page.screenshot({ path: `${shots}/app-growth-laptop.png`, fullPage: true });
  await accessible(page, 'a child\'s growth');
  await page.goto(`${base}/app/patient/pat-a`);

  // phone: the same session, the same pages fit the width
  const state = await laptop.storageState();
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, storageState: state });
  const small = await phone.newPage();
  watch(small);
  for (const [path, shot] of [
    ['/app', 'app-find-phone.png'],
    ['/app/patient/pat-a', 'app-chart-phone.png'],
    ['/app/patient/pat-a/vitals', 'app-vitals-phone.png'],
    ['/app/patient/pat-k/vitals', 'app-growth-phone.png'],
    ['/app/patient/pat-a/results', 'app-results-phone.png'],
    ['/app/patient/pat-a/vitals/new', 'app-record-phone.png'],
    ['/app/patient/pat-a/prescribe?q=amox', 'app-prescribe-phone.png'],
    ['/app/patient/pat-a/documents', 'app-documents-phone.png'],
    ['/app/patient/pat-a/document/DiagnosticReport/rad-a', 'app-report-phone.png'],
    ['/app/due?rule=td-booster', 'app-due-filtered-phone.png'],
    ['/app/measures', 'app-measures-phone.png'],
  ]) {
    await small.goto(`${base}${path}`);
    const opened = new URL(small.url());
    check(opened.pathname + opened.search === path, `phone: ${path} opens`);
    await small.screenshot({ path: `${shots}/${shot}`, fullPage: true });
    const overflow = await small.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
    check(!overflow, `phone: ${path} fits the width`);
  }
  await phone.close();

  // the idle timeout: a warning two minutes before, which keeps the session; after it,
  // a notice, and what was typed stays on the page (the page's clock is a fake one)
  const idle = await laptop.newPage();
  watch(idle);
  await idle.clock.install();
  await idle.goto(`${base}/app/patient/pat-a/vitals/new`);
  await idle.fill('#pulse', '66');
  await idle.clock.fastForward('13:05');
  check((await idle.locator('.idle-notice').textContent()).includes('signed out in 2 minutes'), 'a warning comes before the idle timeout');
  await idle.screenshot({ path: `${shots}/app-idle-warning-laptop.png` });
  await idle.getByRole('button', { name: 'Stay signed in' }).click();
  await idle.waitForSelector('.idle-notice', { state: 'detached' });
  check(true, 'staying signed in takes the warning away');
  await idle.clock.fastForward('15:10');
  check((await idle.locator('.idle-notice').textContent()).includes('You were signed out'), 'after the idle time the page says so');
  check((await idle.inputValue('#pulse')) === '66', 'what was typed stays on the page');
  await idle.close();

  // sign out: back to the sign-in page; the chart is closed to this browser
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/auth\/login/);
  check(true, 'signing out leads to the sign-in page');
  await page.goto(`${base}/app/patient/pat-a`);
  check(new URL(page.url()).pathname === '/auth/login', 'after signing out the chart asks for sign-in');

  check(foreign.length === 0, `no request left the origin ${JSON.stringify(foreign)}`);
  check(dialogs.length === 0, `no dialog opened ${JSON.stringify(dialogs)}`);
  await laptop.close();
} finally {
  await browser.close();
}
console.log(JSON.stringify({ checks }));
