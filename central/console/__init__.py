"""The centre's web console: server-rendered pages (Starlette + Jinja2, htmx vendored and sha256-pinned),
a Server-Sent Events feed, operators with roles, served over HTTPS by `facelock-central console`.

Folders: `schema` + `migrations` (the console's own tables, an Alembic chain of its own beside the
centre's), `operators` (argon2id passwords, lockout, TOTP), `sessions` (cookies + CSRF), `throttle`
(login rate limit), `readmodel` (what the pages show, read from the centre's database), `charts` (SVG,
pure), `commands` (the door commands the console offers), `app` (routes, security headers), `assets`
(the pinned static files), `server` (TLS certificate and uvicorn).
"""
