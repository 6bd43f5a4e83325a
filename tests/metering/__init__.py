"""Custom metering, black-box: `run`, the import API, the CLI and the emulator over loopback."""
