"""Operators of the OVHcloud AI Endpoints provider. Import from `operators.ai_endpoints`."""
