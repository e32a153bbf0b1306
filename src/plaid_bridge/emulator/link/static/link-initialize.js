/*
 * Plaid Link, as the plaid-bridge emulator serves it: a drop-in for Plaid's link-initialize.js.
 *
 * window.Plaid.create({token, onSuccess, onExit, onEvent, onLoad, receivedRedirectUri}) returns
 * a handler with open(), exit(options), submit(data) and destroy(). Link runs in a full-page
 * iframe served by the emulator (the origin this script came from); the two sides talk by
 * postMessage, each checking the other's origin and window.
 */
(function () {
  "use strict";

  var CDN_SRC = "https://cdn.plaid.com/link/v2/stable/link-initialize.js";
  var SOURCE = "plaid-emulator-link";

  if (window.Plaid && window.Plaid.emulator) {
    return; // loaded twice: the first copy keeps its handlers
  }

  var script = document.currentScript;
  if (!script || !script.src) {
    throw new Error("link-initialize.js must be loaded with a <script src> tag");
  }
  var emulatorOrigin = new URL(script.src, window.location.href).origin;
  var linkPage = new URL("link.html", script.src).href;
  var created = 0;

  // react-plaid-link loads Plaid's CDN script unless a <script> with exactly that src exists.
  // An inert one (type text/plain is never fetched) makes it use this window.Plaid instead.
  function markAsPlaidScript() {
    if (document.querySelector('script[src="' + CDN_SRC + '"]')) {
      return;
    }
    var marker = document.createElement("script");
    marker.type = "text/plain";
    marker.setAttribute("data-plaid-emulator", "marker");
    marker.setAttribute("src", CDN_SRC);
    (document.head || document.documentElement).appendChild(marker);
  }

  function call(callback) {
    if (typeof callback === "function") {
      callback.apply(null, Array.prototype.slice.call(arguments, 1));
    }
  }

  function create(config) {
    if (!config || typeof config !== "object") {
      throw new TypeError("Plaid.create expects a configuration object");
    }
    if (!config.token && !config.receivedRedirectUri) {
      throw new Error("Plaid.create: a link token (token) is required");
    }

    created += 1;
    var channel = SOURCE + "-" + created + "-" + Math.random().toString(36).slice(2);
    var iframe = document.createElement("iframe");
    iframe.id = "plaid-link-iframe-" + created;
    iframe.title = "Plaid Link";
    iframe.setAttribute("data-testid", "plaid-link-iframe");
    iframe.src = linkPage + "?" + new URLSearchParams({
      origin: window.location.origin,
      channel: channel
    }).toString();
    iframe.style.cssText = [
      "position: fixed", "inset: 0", "width: 100%", "height: 100%", "border: 0",
      "margin: 0", "padding: 0", "z-index: 2147483647", "background: transparent",
      "display: none", "color-scheme: normal"
    ].join("; ");

    var ready = false;
    var openWhenReady = false;
    var isOpen = false;
    var destroyed = false;
    var savedOverflow = null;

    function post(message) {
      message.source = SOURCE;
      message.channel = channel;
      iframe.contentWindow.postMessage(message, emulatorOrigin);
    }

    function show() {
      isOpen = true;
      savedOverflow = document.body ? document.body.style.overflow : null;
      if (document.body) {
        document.body.style.overflow = "hidden";
      }
      iframe.style.display = "block";
      iframe.focus();
    }

    function hide() {
      isOpen = false;
      iframe.style.display = "none";
      if (document.body && savedOverflow !== null) {
        document.body.style.overflow = savedOverflow;
      }
    }

    function start() {
      show();
      post({
        type: "open",
        token: config.token || null,
        received_redirect_uri: config.receivedRedirectUri || null
      });
    }

    function onMessage(event) {
      if (event.origin !== emulatorOrigin || event.source !== iframe.contentWindow) {
        return;
      }
      var data = event.data;
      if (!data || data.source !== SOURCE || data.channel !== channel || destroyed) {
        return;
      }
      if (data.type === "ready") {
        ready = true;
        call(config.onLoad);
        if (openWhenReady) {
          openWhenReady = false;
          start();
        }
      } else if (data.type === "event") {
        call(config.onEvent, data.event_name, data.metadata);
      } else if (data.type === "success") {
        hide();
        call(config.onSuccess, data.public_token, data.metadata);
      } else if (data.type === "exit") {
        hide();
        call(config.onExit, data.error, data.metadata);
      }
    }

    window.addEventListener("message", onMessage);
    (document.body || document.documentElement).appendChild(iframe);

    return {
      open: function () {
        if (destroyed || isOpen) {
          return;
        }
        if (!ready) {
          openWhenReady = true; // as Plaid's: an early open() waits for the module to load
          return;
        }
        start();
      },
      exit: function (options) {
        if (destroyed) {
          return;
        }
        if (!isOpen) {
          openWhenReady = false;
          return;
        }
        post({ type: "exit", force: Boolean(options && options.force) });
      },
      submit: function (data) {
        if (!destroyed && ready) {
          post({ type: "submit", data: data || {} });
        }
      },
      destroy: function () {
        if (destroyed) {
          return;
        }
        destroyed = true;
        if (isOpen) {
          hide();
        }
        window.removeEventListener("message", onMessage);
        iframe.remove();
      }
    };
  }

  markAsPlaidScript();
  window.Plaid = {
    create: create,
    emulator: { origin: emulatorOrigin, version: "2" }
  };
})();
