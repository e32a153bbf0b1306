/*
 * The plaid-bridge demo page: the whole connect flow through the documented API.
 *
 *   POST /api/v1/plaid/dev/token            development token (emulator mode only)
 *   POST /api/v1/plaid/create-link-token    -> Plaid.create({token}).open() -> onSuccess
 *   POST /api/v1/plaid/exchange-token       the public token becomes a connection
 *   GET  /api/v1/plaid/connections, /accounts/{itemId}, /transactions?itemId=&limit=10
 *   GET  /api/v1/plaid/connections/{itemId}/health
 *   POST /api/v1/plaid/connections/{itemId}/reauth -> Link in update mode -> .../reauth/complete
 *
 * Breaking a connection is the emulator's doing (its control route), as a bank asking the user
 * to log in again would be. Authentication is a Bearer header, or a cookie with the
 * double-submit X-XSRF-TOKEN header on unsafe methods (`credentials: "include"`).
 */
(function () {
  "use strict";

  var meta = function (name) {
    return document.querySelector('meta[name="' + name + '"]').getAttribute("content");
  };
  var API = meta("plaid-bridge-api") + "/api/v1/plaid";
  var EMULATOR = meta("plaid-bridge-emulator");
  var SAFE_METHODS = ["GET", "HEAD", "OPTIONS"];
  // The first sync runs in the service's worker after the exchange: poll a bounded number of
  // times, then leave it to the Refresh button.
  var TRANSACTION_POLLS = 20;
  var POLL_INTERVAL_MS = 500;

  var state = { token: null, auth: "bearer", signedIn: false, itemId: null, busy: false };

  function el(testId) {
    return document.querySelector('[data-testid="' + testId + '"]');
  }

  function make(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) {
      node.textContent = String(text);
    }
    if (className) {
      node.className = className;
    }
    return node;
  }

  function readCookie(name) {
    var prefix = name + "=";
    var found = document.cookie.split("; ").filter(function (part) {
      return part.indexOf(prefix) === 0;
    })[0];
    return found ? decodeURIComponent(found.slice(prefix.length)) : null;
  }

  // ---- the API ------------------------------------------------------------------------------

  function ApiError(method, path, status, body) {
    var error = (body && body.error) || {};
    this.name = "ApiError";
    this.status = status;
    this.code = error.code || "HTTP_" + status;
    this.message = error.message || "The service answered " + status + ".";
    this.requestId = (body && body.requestId) || null;
    this.call = method + " " + path;
  }
  ApiError.prototype = Object.create(Error.prototype);

  function logCall(method, url, status, detail) {
    var entry = make("li", null, status >= 400 || status === 0 ? "failed" : "ok");
    entry.appendChild(make("code", method + " " + url));
    entry.appendChild(make("span", status === 0 ? "no answer" : String(status), "code"));
    if (detail) {
      entry.appendChild(make("span", detail, "detail"));
    }
    el("log").prepend(entry);
  }

  async function call(method, url, body, logAs) {
    var headers = { Accept: "application/json" };
    var init = { method: method, headers: headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    if (url.indexOf(API) === 0) {
      if (state.auth === "cookie") {
        init.credentials = "include"; // the access_token cookie travels with the request
        var xsrf = readCookie("XSRF-TOKEN");
        if (xsrf && SAFE_METHODS.indexOf(method) < 0) {
          headers["X-XSRF-TOKEN"] = xsrf;
        }
      } else if (state.token) {
        headers.Authorization = "Bearer " + state.token;
      }
    }
    var response;
    try {
      response = await fetch(url, init);
    } catch (failure) {
      logCall(method, logAs, 0, String(failure.message || failure));
      throw new ApiError(method, logAs, 0, {
        error: { code: "NETWORK_ERROR", message: "No answer from " + url + "." }
      });
    }
    var text = await response.text();
    var data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (notJson) {
      data = null;
    }
    var failed = !response.ok;
    var detail = failed && data && data.error ? data.error.code + ": " + data.error.message : "";
    logCall(method, logAs, response.status, detail);
    if (failed) {
      throw new ApiError(method, logAs, response.status, data);
    }
    return data;
  }

  function api(method, path, body) {
    return call(method, API + path, body, path);
  }

  function emulator(method, path) {
    return call(method, EMULATOR + path, undefined, EMULATOR + path);
  }

  function showError(error) {
    var banner = el("error");
    if (!error) {
      banner.hidden = true;
      banner.textContent = "";
      return;
    }
    var text = error instanceof ApiError
      ? error.call + " failed: " + error.code + " — " + error.message
      : String(error.message || error);
    if (error.requestId) {
      text += " (request " + error.requestId + ")";
    }
    banner.textContent = text;
    banner.hidden = false;
  }

  // Runs one user action; the page shows its error instead of leaving a rejected promise.
  async function action(work) {
    if (state.busy) {
      return;
    }
    state.busy = true;
    showError(null);
    updateButtons();
    try {
      await work();
    } catch (error) {
      showError(error);
    } finally {
      state.busy = false;
      updateButtons();
    }
  }

  function updateButtons() {
    el("sign-in").disabled = state.busy;
    el("connect").disabled = state.busy || !state.signedIn;
    ["break", "repair", "check-health", "refresh-transactions"].forEach(function (id) {
      el(id).disabled = state.busy || !state.itemId;
    });
  }

  // ---- Link ---------------------------------------------------------------------------------

  function setLinkOutcome(text, kind) {
    var outcome = el("link-outcome");
    outcome.textContent = text;
    outcome.className = "status " + (kind || "");
    outcome.setAttribute("data-outcome", kind || "");
  }

  // Opens Link with `linkToken`; resolves with {publicToken, metadata} on success, or null
  // when the user left (onExit, shown on the page with its error).
  function runLink(linkToken) {
    return new Promise(function (resolve) {
      var handler = window.Plaid.create({
        token: linkToken,
        onSuccess: function (publicToken, metadata) {
          handler.destroy();
          resolve({ publicToken: publicToken, metadata: metadata });
        },
        onExit: function (error, metadata) {
          handler.destroy();
          if (error) {
            setLinkOutcome(
              "Link exited: " + error.error_code + " — " +
                (error.display_message || error.error_message) +
                " (status " + metadata.status + ")",
              "error"
            );
          } else {
            setLinkOutcome("Link closed without connecting (status " + metadata.status + ").",
              "exit");
          }
          resolve(null);
        },
        onEvent: function (eventName, metadata) {
          if (eventName === "ERROR" && metadata.error_code) {
            setLinkOutcome("Link reported " + metadata.error_code + "…", "pending");
          }
        }
      });
      setLinkOutcome("Link is open…", "pending");
      handler.open();
    });
  }

  // ---- steps --------------------------------------------------------------------------------

  async function signIn(form) {
    var fields = new FormData(form);
    var auth = fields.get("auth");
    var body = { userId: fields.get("userId"), orgId: fields.get("orgId"), role: fields.get("role") };
    if (auth === "cookie") {
      body.cookie = true;
    }
    state.auth = auth;
    state.token = null;
    var issued = await api("POST", "/dev/token", body);
    state.token = auth === "cookie" ? null : issued.token;
    state.signedIn = true;
    el("identity-status").textContent = "Signed in as " + body.userId + " (" + body.role +
      ") in org " + body.orgId + ", " + (auth === "cookie" ? "by cookie" : "by Bearer token") +
      "; the token expires " + new Date(issued.expiresAt).toLocaleString() + ".";
    el("identity-status").setAttribute("data-signed-in", "true");
    await loadConnections();
  }

  async function connect() {
    var created = await api("POST", "/create-link-token", {});
    var linked = await runLink(created.linkToken);
    if (!linked) {
      return;
    }
    var institution = linked.metadata.institution || {};
    setLinkOutcome("Linked " + (institution.name || "a bank") + "; exchanging the public token…",
      "pending");
    var connection = await api("POST", "/exchange-token", {
      publicToken: linked.publicToken,
      institutionId: institution.institution_id,
      institutionName: institution.name
    });
    setLinkOutcome("Connected " + connection.institutionName + " (" + connection.itemId + ").",
      "success");
    state.itemId = connection.itemId;
    await loadConnections();
    await showConnection(connection.itemId, { waitForTransactions: true });
  }

  function statusBadge(node, status) {
    node.textContent = status;
    node.setAttribute("data-status", status);
  }

  async function loadConnections() {
    var connections = await api("GET", "/connections");
    var body = el("connections").querySelector("tbody");
    body.replaceChildren();
    connections.forEach(function (connection) {
      var row = make("tr");
      row.setAttribute("data-testid", "connection-row");
      row.setAttribute("data-item-id", connection.itemId);
      if (connection.itemId === state.itemId) {
        row.className = "selected";
      }
      row.appendChild(make("td", connection.institutionName || connection.institutionId));
      var status = make("span", null, "badge");
      statusBadge(status, connection.status);
      status.setAttribute("data-testid", "connection-row-status");
      var statusCell = make("td");
      statusCell.appendChild(status);
      row.appendChild(statusCell);
      row.appendChild(make("td", connection.itemId, "mono"));
      row.appendChild(make("td", connection.lastSyncedAt
        ? new Date(connection.lastSyncedAt).toLocaleString() : "not yet"));
      var open = make("button", "Show");
      open.type = "button";
      open.addEventListener("click", function () {
        action(function () { return showConnection(connection.itemId, {}); });
      });
      var openCell = make("td");
      openCell.appendChild(open);
      row.appendChild(openCell);
      body.appendChild(row);
    });
    el("connections-empty").hidden = connections.length > 0;
    return connections;
  }

  async function showConnection(itemId, options) {
    state.itemId = itemId;
    el("detail").hidden = false;
    updateButtons();
    var connections = await loadConnections();
    var connection = connections.filter(function (c) { return c.itemId === itemId; })[0];
    if (connection) {
      el("detail-title").textContent = (connection.institutionName || "Connection") + " · " +
        itemId;
      statusBadge(el("connection-status"), connection.status);
    }
    await loadHealth(false);
    await loadAccounts();
    var found = await loadTransactions(options.waitForTransactions ? TRANSACTION_POLLS : 1);
    if (found && options.waitForTransactions) {
      // The first sync is done: "Last synced" has a time now, and health knows it.
      await loadConnections();
      await loadHealth(false);
    }
  }

  async function loadHealth(live) {
    var health = await api("GET", "/connections/" + encodeURIComponent(state.itemId) + "/health" +
      (live ? "?live=true" : ""));
    statusBadge(el("health-status"), health.status);
    el("health-message").textContent = health.message || "";
    return health;
  }

  async function refreshStatus() {
    var connections = await loadConnections();
    var connection = connections.filter(function (c) { return c.itemId === state.itemId; })[0];
    if (connection) {
      statusBadge(el("connection-status"), connection.status);
    }
  }

  async function loadAccounts() {
    var accounts = await api("GET", "/accounts/" + encodeURIComponent(state.itemId));
    var body = el("accounts").querySelector("tbody");
    body.replaceChildren();
    accounts.forEach(function (account) {
      var row = make("tr");
      row.setAttribute("data-testid", "account-row");
      row.appendChild(make("td", account.name));
      row.appendChild(make("td", account.mask ? "••" + account.mask : ""));
      row.appendChild(make("td", account.subtype || account.type));
      var balances = account.balances || {};
      row.appendChild(make("td", money(balances.current, balances.iso_currency_code), "num"));
      body.appendChild(row);
    });
  }

  function money(amount, currency) {
    if (amount === null || amount === undefined) {
      return "";
    }
    return new Intl.NumberFormat(undefined, {
      style: "currency", currency: currency || "USD"
    }).format(amount);
  }

  function wait(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  async function loadTransactions(tries) {
    var note = el("transactions-status");
    var path = "/transactions?itemId=" + encodeURIComponent(state.itemId) + "&limit=10";
    var listed = { transactions: [] };
    for (var attempt = 1; attempt <= tries; attempt += 1) {
      if (tries > 1) {
        note.textContent = "Waiting for the first sync… (" + attempt + "/" + tries + ")";
      }
      listed = await api("GET", path);
      if (listed.transactions.length > 0 || attempt === tries) {
        break;
      }
      await wait(POLL_INTERVAL_MS);
    }
    var body = el("transactions").querySelector("tbody");
    body.replaceChildren();
    listed.transactions.forEach(function (transaction) {
      var row = make("tr");
      row.setAttribute("data-testid", "transaction-row");
      row.appendChild(make("td", transaction.date));
      row.appendChild(make("td", transaction.merchant_name || transaction.name));
      // Plaid's sign: positive is money leaving the account.
      row.appendChild(make("td", money(-transaction.amount, transaction.iso_currency_code),
        "num " + (transaction.amount > 0 ? "out" : "in")));
      row.appendChild(make("td", transaction.pending ? "pending" : "", "muted"));
      body.appendChild(row);
    });
    note.textContent = listed.transactions.length
      ? "The " + listed.transactions.length + " latest transactions."
      : "No transactions yet: the first sync may still be running. Try Refresh.";
    return listed.transactions.length > 0;
  }

  async function breakConnection() {
    await emulator("POST", "/emulator/items/" + encodeURIComponent(state.itemId) + "/reset-login");
    // Plaid now reports ITEM_LOGIN_REQUIRED for the Item: a live health check records it (the
    // ITEM/ERROR webhook the emulator sent does the same a moment later).
    await loadHealth(true);
    await refreshStatus();
  }

  async function repairConnection() {
    var itemPath = "/connections/" + encodeURIComponent(state.itemId);
    var created = await api("POST", itemPath + "/reauth", {});
    var linked = await runLink(created.linkToken);
    if (!linked) {
      return;
    }
    // Update mode: nothing to exchange; the service confirms with Plaid that the Item works.
    var connection = await api("POST", itemPath + "/reauth/complete");
    setLinkOutcome("Repaired " + connection.institutionName + ": " + connection.status + ".",
      "success");
    await loadHealth(false);
    await refreshStatus();
  }

  // ---- wiring -------------------------------------------------------------------------------

  el("identity-form").addEventListener("submit", function (event) {
    event.preventDefault();
    action(function () { return signIn(event.target); });
  });
  el("connect").addEventListener("click", function () { action(connect); });
  el("break").addEventListener("click", function () { action(breakConnection); });
  el("repair").addEventListener("click", function () { action(repairConnection); });
  el("check-health").addEventListener("click", function () {
    action(async function () {
      await loadHealth(true);
      await refreshStatus();
    });
  });
  el("refresh-transactions").addEventListener("click", function () {
    action(function () { return loadTransactions(1); });
  });
  if (!window.Plaid) {
    showError(new Error("Plaid Link's script did not load from " + EMULATOR +
      ": is the emulator running?"));
  }
  updateButtons();
  document.body.setAttribute("data-ready", "true");
})();
