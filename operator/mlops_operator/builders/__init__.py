"""Pure functions: a validated spec -> child manifests. Imports only `api`."""
