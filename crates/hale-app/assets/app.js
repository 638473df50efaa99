// Hale's one script: a warning before the session's idle timeout. The pages work
// without it. The server says how long a session lasts without activity
// (body[data-idle-seconds]); two minutes before that, a notice offers to stay signed
// in; typing in a form counts as activity (at most one keep-alive a minute), so what
// is being typed is never lost to the timeout.
(function () {
  'use strict';
  var idle = Number(document.body.getAttribute('data-idle-seconds') || 0);
  if (!idle) return;
  var warnBefore = Math.min(120, idle / 2);
  var warnTimer = null;
  var endTimer = null;
  var lastPing = Date.now();
  var notice = null;

  function show(text, withButton) {
    if (!notice) {
      notice = document.createElement('div');
      notice.className = 'idle-notice';
      notice.setAttribute('role', 'alert');
      document.body.appendChild(notice);
    }
    notice.textContent = text + ' ';
    if (withButton) {
      var b = document.createElement('button');
      b.type = 'button';
      b.className = 'primary';
      b.textContent = 'Stay signed in';
      b.addEventListener('click', keepAlive);
      notice.appendChild(b);
      b.focus();
    } else {
      var a = document.createElement('a');
      a.href = '/auth/login?next=' + encodeURIComponent(location.pathname + location.search);
      a.target = '_blank';
      a.rel = 'noopener';
      a.textContent = 'Sign in again in a new tab';
      notice.appendChild(a);
      notice.appendChild(document.createTextNode(', then come back here: what you typed is still on this page.'));
    }
  }

  function hide() {
    if (notice) {
      notice.remove();
      notice = null;
    }
  }

  function schedule() {
    clearTimeout(warnTimer);
    clearTimeout(endTimer);
    warnTimer = setTimeout(function () {
      show('You will be signed out in ' + Math.round(warnBefore / 60) + ' minutes because of inactivity.', true);
    }, (idle - warnBefore) * 1000);
    endTimer = setTimeout(function () {
      show('You were signed out after ' + Math.round(idle / 60) + ' minutes without activity.', false);
    }, idle * 1000);
  }

  function keepAlive() {
    lastPing = Date.now();
    fetch('/app/keepalive', { credentials: 'same-origin', redirect: 'manual' }).then(function (r) {
      if (r.status === 204) {
        hide();
        schedule();
      } else {
        show('You were signed out.', false);
      }
    });
  }

  document.addEventListener('input', function () {
    if (Date.now() - lastPing > 60000) keepAlive();
  });
  schedule();
})();
