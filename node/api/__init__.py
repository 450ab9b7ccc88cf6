"""The client API: routes, JSON views, audit, metrics exposure, the dashboard."""
