"""How the API meets browsers: CORS for the configured origins (`cors.py`) and, as an option,
Operate's `{data, meta}` response envelope (`envelope.py`), both applied to the API's routes
only (`scope.py`): never to the webhook, which Plaid calls, nor to the ops endpoints. Cookie
authentication and its CSRF check are in `security/credentials.py`."""
