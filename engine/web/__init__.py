"""The admin's web face: what guards every request, dashboard sessions, and (beside these
modules) the dashboard's templates and static files."""
