/*
 * The emulator's Link page, inside the iframe that link-initialize.js opens. It walks the user
 * through Plaid's panes (institution, credentials, accounts, success or error), asks the emulator
 * (same origin, /link/session/*) to decide each step, and reports to the parent page with
 * postMessage: events, then success or exit, in Plaid's shapes and snake_case.
 */
(function () {
  "use strict";

  var SOURCE = "plaid-emulator-link";
  var SEARCH_EVENT_DELAY_MS = 300;
  var params = new URLSearchParams(window.location.search);
  var parentOrigin = params.get("origin");
  var channel = params.get("channel");

  function $(id) {
    return document.getElementById(id);
  }

  if (!parentOrigin || !channel || window.parent === window) {
    $("standalone").hidden = false;
    return;
  }

  var HEADINGS = {
    LOADING: "Connecting",
    SELECT_INSTITUTION: "Select your bank",
    CREDENTIAL: "Log in",
    SELECT_ACCOUNT: "Select accounts",
    CONNECTED: "Success",
    ERROR: "Something went wrong"
  };

  var s = null; // the session in progress, null while closed

  function fresh() {
    return {
      linkSessionId: null,
      requestId: null,
      mode: null,
      accountSelection: false,
      institutions: [],
      institution: null,
      accounts: [],
      view: null,
      error: null,
      searchQuery: "",
      noResults: false,
      success: null,
      busy: false,
      searchTimer: null
    };
  }

  // ---- talking to the parent ----------------------------------------------------------------

  function send(type, fields) {
    var message = fields || {};
    message.source = SOURCE;
    message.channel = channel;
    message.type = type;
    window.parent.postMessage(message, parentOrigin);
  }

  function emit(eventName, extra) {
    var metadata = {
      error_code: null,
      error_message: null,
      error_type: null,
      exit_status: null,
      institution_id: s.institution ? s.institution.institution_id : null,
      institution_name: s.institution ? s.institution.name : null,
      institution_search_query: null,
      link_session_id: s.linkSessionId,
      mfa_type: null,
      request_id: s.requestId,
      selection: null,
      timestamp: new Date().toISOString(),
      view_name: null
    };
    Object.keys(extra || {}).forEach(function (key) {
      metadata[key] = extra[key];
    });
    send("event", { event_name: eventName, metadata: metadata });
  }

  function errorFields(error) {
    return {
      error_type: error.error_type,
      error_code: error.error_code,
      error_message: error.error_message
    };
  }

  // ---- talking to the emulator --------------------------------------------------------------

  function api(step, body) {
    return fetch("/link/session/" + step, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit"
    }).then(function (response) {
      return response.json().then(function (payload) {
        if (payload.request_id && s) {
          s.requestId = payload.request_id;
        }
        if (!response.ok) {
          var failure = new Error(payload.error ? payload.error.error_code : "HTTP " + response.status);
          failure.plaid = payload.error || null;
          failure.retryable = Boolean(payload.retryable);
          failure.linkSessionId = payload.link_session_id || null;
          throw failure;
        }
        return payload;
      });
    });
  }

  function linkError(failure) {
    var plaid = failure.plaid || {
      error_type: "API_ERROR",
      error_code: "INTERNAL_SERVER_ERROR",
      error_message: String(failure.message || failure),
      display_message: "Something went wrong. Please try again later."
    };
    return {
      error_type: plaid.error_type,
      error_code: plaid.error_code,
      error_message: plaid.error_message,
      display_message: plaid.display_message
    };
  }

  // ---- panes --------------------------------------------------------------------------------

  function showView(name, quiet) {
    Array.prototype.forEach.call(document.querySelectorAll("[data-view]"), function (section) {
      section.hidden = section.getAttribute("data-view") !== name;
    });
    var heading = HEADINGS[name];
    if (name === "CREDENTIAL" && s.institution) {
      heading = "Log in to " + s.institution.name;
    }
    $("link-heading").textContent = heading;
    s.view = name;
    if (!quiet) {
      emit("TRANSITION_VIEW", { view_name: name });
    }
    var focus = {
      SELECT_INSTITUTION: "institution-search",
      CREDENTIAL: "username",
      CONNECTED: "continue-connected",
      ERROR: "error-exit"
    }[name];
    ($(focus) || $("link-heading")).focus();
  }

  function setBusy(busy) {
    s.busy = busy;
    ["submit-credentials", "continue-accounts", "continue-connected"].forEach(function (id) {
      $(id).disabled = busy;
    });
  }

  function renderInstitutions() {
    var query = s.searchQuery.trim().toLowerCase();
    var list = $("institution-list");
    list.textContent = "";
    var shown = s.institutions.filter(function (institution) {
      return !query || institution.name.toLowerCase().indexOf(query) !== -1 ||
        institution.institution_id.toLowerCase() === query;
    });
    shown.forEach(function (institution) {
      var item = document.createElement("li");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "institution";
      button.setAttribute("data-testid", "institution-" + institution.institution_id);
      button.setAttribute("data-institution-id", institution.institution_id);
      var swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.setAttribute("aria-hidden", "true");
      swatch.style.background = institution.primary_color;
      var name = document.createElement("span");
      name.textContent = institution.name;
      button.appendChild(swatch);
      button.appendChild(name);
      button.addEventListener("click", function () {
        selectInstitution(institution);
      });
      item.appendChild(button);
      list.appendChild(item);
    });
    s.noResults = shown.length === 0;
    $("institution-empty").hidden = !s.noResults;
  }

  function renderAccounts() {
    var list = $("account-list");
    list.textContent = "";
    s.accounts.forEach(function (account) {
      var id = "account-" + account.id;
      var row = document.createElement("div");
      row.className = "account";
      var box = document.createElement("input");
      box.type = "checkbox";
      box.id = id;
      box.value = account.id;
      box.setAttribute("data-testid", "account-" + account.name);
      var label = document.createElement("label");
      label.htmlFor = id;
      label.textContent = account.name + " ····" + (account.mask || "") + " (" + account.subtype + ")";
      row.appendChild(box);
      row.appendChild(label);
      list.appendChild(row);
    });
    $("account-error").hidden = true;
  }

  function showError(error) {
    $("error-display").textContent = error.display_message || error.error_message;
    $("error-code").textContent = error.error_code;
    showView("ERROR");
  }

  // ---- the flow -----------------------------------------------------------------------------

  function begin(token) {
    s = fresh();
    $("link-backdrop").hidden = false;
    $("credential-form").reset();
    $("credential-error").hidden = true;
    $("institution-search").value = "";
    showView("LOADING", true);
    setBusy(true);
    api("start", { link_token: token || "" }).then(function (started) {
      setBusy(false);
      s.linkSessionId = started.link_session_id;
      s.mode = started.mode;
      s.accountSelection = started.account_selection_enabled;
      s.institutions = started.institutions;
      emit("OPEN");
      if (started.mode === "update") {
        s.institution = started.institution;
        showView("CREDENTIAL");
      } else {
        renderInstitutions();
        showView("SELECT_INSTITUTION");
      }
    }, function (failure) {
      // A refused link token ends Link at once, as Plaid's does.
      setBusy(false);
      s.linkSessionId = failure.linkSessionId;
      s.error = linkError(failure);
      emit("ERROR", errorFields(s.error));
      leave();
    });
  }

  function onSearch() {
    s.searchQuery = $("institution-search").value;
    renderInstitutions();
    // One SEARCH_INSTITUTION per pause in typing, not per keystroke.
    window.clearTimeout(s.searchTimer);
    s.searchTimer = window.setTimeout(flushSearchEvent, SEARCH_EVENT_DELAY_MS);
  }

  function flushSearchEvent() {
    if (s.searchTimer !== null) {
      window.clearTimeout(s.searchTimer);
      s.searchTimer = null;
      if (s.searchQuery.trim()) {
        emit("SEARCH_INSTITUTION", { institution_search_query: s.searchQuery });
      }
    }
  }

  function selectInstitution(institution) {
    flushSearchEvent(); // the search that found it is reported before the choice
    s.institution = { name: institution.name, institution_id: institution.institution_id };
    emit("SELECT_INSTITUTION");
    showView("CREDENTIAL");
  }

  function submitCredentials(event) {
    event.preventDefault();
    if (s.busy) {
      return;
    }
    var username = $("username").value;
    var password = $("password").value;
    emit("SUBMIT_CREDENTIALS");
    setBusy(true);
    showView("LOADING");
    api("credentials", {
      link_session_id: s.linkSessionId,
      institution_id: s.institution ? s.institution.institution_id : null,
      username: username,
      password: password
    }).then(function (loggedIn) {
      setBusy(false);
      s.error = null;
      s.institution = loggedIn.institution;
      s.accounts = loggedIn.accounts;
      if (loggedIn.account_selection_enabled) {
        renderAccounts();
        showView("SELECT_ACCOUNT");
      } else {
        finish(null);
      }
    }, function (failure) {
      setBusy(false);
      s.error = linkError(failure);
      emit("ERROR", errorFields(s.error));
      if (failure.retryable) {
        $("password").value = "";
        $("credential-error").textContent = s.error.display_message || s.error.error_message;
        $("credential-error").hidden = false;
        showView("CREDENTIAL");
      } else {
        showError(s.error);
      }
    });
  }

  function submitAccounts(event) {
    event.preventDefault();
    if (s.busy) {
      return;
    }
    var chosen = Array.prototype.filter.call(
      document.querySelectorAll("#account-list input[type=checkbox]"),
      function (box) { return box.checked; }
    ).map(function (box) { return box.value; });
    if (chosen.length === 0) {
      $("account-error").hidden = false;
      return;
    }
    setBusy(true);
    finish(chosen);
  }

  function finish(accountIds) {
    setBusy(true);
    api("finish", { link_session_id: s.linkSessionId, account_ids: accountIds }).then(
      function (done) {
        setBusy(false);
        s.success = done;
        var names = done.metadata.accounts.map(function (a) { return a.name; }).join(", ");
        $("connected-message").textContent = s.mode === "update"
          ? "Your connection to " + done.metadata.institution.name + " works again."
          : "Connected to " + done.metadata.institution.name + ": " + names + ".";
        showView("CONNECTED");
      },
      function (failure) {
        setBusy(false);
        s.error = linkError(failure);
        emit("ERROR", errorFields(s.error));
        showError(s.error);
      }
    );
  }

  function handOff() {
    var done = s.success;
    emit("HANDOFF");
    close();
    send("success", { public_token: done.public_token, metadata: done.metadata });
  }

  function exitStatus() {
    if (s.view === "SELECT_ACCOUNT") {
      return "requires_account_selection";
    }
    if (s.view === "SELECT_INSTITUTION") {
      flushSearchEvent();
    }
    if (s.view === "SELECT_INSTITUTION" && s.noResults) {
      return "institution_not_found";
    }
    return "requires_credentials";
  }

  // The user (or exit()) leaves: after a success that is the hand-off, otherwise onExit.
  function leave() {
    if (!s) {
      return;
    }
    if (s.success) {
      handOff();
      return;
    }
    var session = s;
    var status = exitStatus();
    var recorded = session.linkSessionId && session.mode
      ? api("exit", { link_session_id: session.linkSessionId, status: status })
      : Promise.resolve();
    recorded.catch(function () { return null; }).then(function () {
      var error = session.error;
      emit("EXIT", Object.assign({ exit_status: status }, error ? errorFields(error) : {}));
      close();
      send("exit", {
        error: error,
        metadata: {
          institution: session.institution,
          status: status,
          link_session_id: session.linkSessionId,
          request_id: session.requestId
        }
      });
    });
  }

  function close() {
    if (s) {
      window.clearTimeout(s.searchTimer);
    }
    $("link-backdrop").hidden = true;
    s = null;
  }

  // ---- wiring -------------------------------------------------------------------------------

  $("institution-search").addEventListener("input", onSearch);
  $("credential-form").addEventListener("submit", submitCredentials);
  $("account-form").addEventListener("submit", submitAccounts);
  $("continue-connected").addEventListener("click", handOff);
  $("error-exit").addEventListener("click", leave);
  $("link-close").addEventListener("click", leave);
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && s) {
      leave();
    }
  });

  window.addEventListener("message", function (event) {
    if (event.source !== window.parent || event.origin !== parentOrigin) {
      return;
    }
    var data = event.data;
    if (!data || data.source !== SOURCE || data.channel !== channel) {
      return;
    }
    if (data.type === "open") {
      begin(data.token);
    } else if (data.type === "exit") {
      leave();
    }
    // "submit" carries data for Plaid flows this emulator does not have (e.g. a phone number
    // for returning users): accepted and ignored, as Link ignores data no pane asks for.
  });

  send("ready");
})();
