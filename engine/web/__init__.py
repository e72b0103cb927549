"""The admin's web face: :func:`api.create_app` assembles module-level routers (the JSON
API's ``routes_*`` by subject, ``dashboard``, ``triage``), what guards every request,
dashboard sessions, and (beside these modules) the dashboard's templates and static files."""
