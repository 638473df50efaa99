// Sign-in and consent in a real headless Chromium, at laptop and phone sizes.
// Usage: node tests/browser/signin.mjs AUTHORIZE_URL USERNAME PASSWORD SCREENSHOT_DIR
// Prints one JSON line: {"codes": [...], "checks": [...]}; exits 1 on the first failed check.
import { chromium } from 'playwright-core';

const [authorizeUrl, username, password, shots] = process.argv.slice(2);
const checks = [];
function check(ok, what) {
  checks.push(what);
  if (!ok) {
    console.error(`FAILED: ${what}`);
    process.exit(1);
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu'],
});
const codes = [];
try {
  for (const [name, viewport] of [['laptop', { width: 1366, height: 800 }], ['phone', { width: 390, height: 844 }]]) {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    // the application's redirect URI: answer it here
    await page.route('http://127.0.0.1:9/**', (route) =>
      route.fulfill({ status: 200, contentType: 'text/html', body: '<p>back in the app</p>' }),
    );
    await page.goto(authorizeUrl);
    check(new URL(page.url()).pathname === '/auth/login', `${name}: an unsigned caller is sent to the sign-in page`);
    check(await page.getByRole('heading', { name: 'Sign in' }).isVisible(), `${name}: the sign-in heading shows`);
    const focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
    check(focused === 'username', `${name}: the user name field has the focus`);
    await page.screenshot({ path: `${shots}/signin-${name}.png`, fullPage: true });
    // a wrong password: a readable message, the name kept
    await page.fill('#username', username);
    await page.fill('#password', 'not the password at all');
    await page.click('button[type=submit]');
    check(await page.getByRole('alert').isVisible(), `${name}: a wrong password gets a message`);
    check((await page.inputValue('#username')) === username, `${name}: the user name is kept`);
    const refocused = await page.evaluate(() => document.activeElement && document.activeElement.id);
    check(refocused === 'password', `${name}: the password field has the focus again`);
    await page.screenshot({ path: `${shots}/signin-error-${name}.png`, fullPage: true });
    // keyboard only: type, Enter
    await page.fill('#password', '');
    await page.focus('#password');
    await page.keyboard.type(password);
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/auth\/authorize/);
    check(await page.getByRole('heading', { name: /^Allow / }).isVisible(), `${name}: the consent page shows`);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    check(!overflow, `${name}: the consent page fits the width`);
    await page.screenshot({ path: `${shots}/consent-${name}.png`, fullPage: true });
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.waitForURL(/127\.0\.0\.1:9\/callback/);
    const back = new URL(page.url());
    check(back.searchParams.get('state') === 'st8', `${name}: the state comes back`);
    check(!!back.searchParams.get('code'), `${name}: a code comes back`);
    codes.push(back.searchParams.get('code'));
    await context.close();
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify({ codes, checks }));
