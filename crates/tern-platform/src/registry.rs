//! The platform registry: organizations, device types, devices, gateways and application
//! API keys, persisted per organization in the broker's data directory.
