"""Hooks of the OVHcloud AI Endpoints provider. Import from `hooks.ai_endpoints` (kept light)."""
