"""Browser tests of the portal (Playwright driving Debian's Chromium) against the real stack."""
