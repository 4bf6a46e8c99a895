"""Every setting a socorg process reads, from environment variables with working local defaults.

Each field names its environment variable in its metadata, so the deploy tests can list every setting
the code reads and check that the compose file and the Kubernetes manifests provide it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Mapping

DEFAULT_JWT_SECRET = "socorg-local-development-secret-change-me"
PRODUCTION = "production"


class SettingsError(ValueError):
    """A setting is missing or unusable; the message names it."""


def _setting(env: str, default, *, secret: bool = False, required_in_production: bool = False, help: str = ""):
    return field(
        default=default,
        metadata={"env": env, "secret": secret, "required_in_production": required_in_production, "help": help},
    )


@dataclass(frozen=True)
class Settings:
    env: str = _setting("SOCORG_ENV", "development", help="development | test | production")
    mongodb_uri: str = _setting("MONGODB_URI", "mongodb://127.0.0.1:27017", required_in_production=True)
    kafka_bootstrap_servers: str = _setting(
        "KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092", required_in_production=True
    )
    jwt_secret: str = _setting("SOCORG_JWT_SECRET", DEFAULT_JWT_SECRET, secret=True, required_in_production=True)
    token_ttl_seconds: int = _setting("SOCORG_TOKEN_TTL_SECONDS", 8 * 3600)

    registry_port: int = _setting("REGISTRY_PORT", 8001)
    evaluation_port: int = _setting("EVALUATION_PORT", 8002)
    fund_port: int = _setting("FUND_PORT", 8003)

    registry_db: str = _setting("REGISTRY_DB", "registry")
    evaluation_db: str = _setting("EVALUATION_DB", "evaluation")
    fund_db: str = _setting("FUND_DB", "fund")

    # Prefix of every topic and consumer group, so several deployments (or test runs) can share a broker.
    kafka_namespace: str = _setting("SOCORG_KAFKA_NAMESPACE", "")
    topic_partitions: int = _setting("SOCORG_TOPIC_PARTITIONS", 6, help="partitions per event topic")
    # Replicas of a topic the services create themselves (the local broker has one node; production three).
    topic_replication: int = _setting("SOCORG_TOPIC_REPLICATION", 1, help="replication factor of created topics")
    # How many times a consumer retries a failing event before it goes to <topic>.dlq.
    consumer_max_attempts: int = _setting("SOCORG_CONSUMER_MAX_ATTEMPTS", 5)
    consumer_backoff_seconds: float = _setting("SOCORG_CONSUMER_BACKOFF_SECONDS", 0.2)
    relay_poll_seconds: float = _setting("SOCORG_RELAY_POLL_SECONDS", 0.05)
    # How often a relay that has found nothing to publish for a second looks (the first event after a quiet
    # spell waits at most this long).
    relay_idle_poll_seconds: float = _setting("SOCORG_RELAY_IDLE_POLL_SECONDS", 0.25)

    # Requests per client per minute on the endpoints that invite abuse (applications, sign-in).
    rate_limit_per_minute: int = _setting("SOCORG_RATE_LIMIT_PER_MINUTE", 60)

    web_workers: int = _setting("WEB_CONCURRENCY", 2, help="gunicorn worker processes per service")
    web_threads: int = _setting("WEB_THREADS", 8, help="threads per gunicorn worker")
    log_level: str = _setting("SOCORG_LOG_LEVEL", "INFO")
    kafka_log_level: str = _setting("SOCORG_KAFKA_LOG_LEVEL", "CRITICAL",
                                    help="kafka-python's own log level (INFO shows group joins and assignments)")
    data_dir: str = _setting("SOCORG_DATA_DIR", ".data", help="where `socorg up` keeps local data")

    # Domain thresholds (../shared/DOMAIN.md): every one is a setting because districts differ.
    region_prefix: str = _setting("SOCORG_REGION_PREFIX", "上海市浦东新区")
    area_code: str = _setting("SOCORG_AREA_CODE", "310115")
    timezone: str = _setting("SOCORG_TIMEZONE", "Asia/Shanghai")

    # --- registry settings (domain thresholds, scheduler) ---
    # DOMAIN.md, Registration.
    registry_name_min_length: int = _setting("REGISTRY_NAME_MIN_LENGTH", 6)
    registry_name_max_length: int = _setting("REGISTRY_NAME_MAX_LENGTH", 50)
    registry_forbidden_name_words: str = _setting("REGISTRY_FORBIDDEN_NAME_WORDS", "中国,全国,中华",
                                                  help="comma-separated words no name may contain")
    registry_min_individual_members: int = _setting("REGISTRY_MIN_INDIVIDUAL_MEMBERS", 50)
    registry_min_unit_members: int = _setting("REGISTRY_MIN_UNIT_MEMBERS", 30)
    registry_min_total_members: int = _setting("REGISTRY_MIN_TOTAL_MEMBERS", 50)
    registry_min_funds_social_group_fen: int = _setting("REGISTRY_MIN_FUNDS_SOCIAL_GROUP_FEN", 3_000_000)
    registry_min_funds_social_service_agency_fen: int = _setting("REGISTRY_MIN_FUNDS_SOCIAL_SERVICE_AGENCY_FEN",
                                                                 10_000_000)
    registry_min_funds_foundation_fen: int = _setting("REGISTRY_MIN_FUNDS_FOUNDATION_FEN", 200_000_000)
    registry_council_min: int = _setting("REGISTRY_COUNCIL_MIN", 3)
    registry_foundation_council_min: int = _setting("REGISTRY_FOUNDATION_COUNCIL_MIN", 5)
    registry_council_max: int = _setting("REGISTRY_COUNCIL_MAX", 25)
    registry_term_years_max: int = _setting("REGISTRY_TERM_YEARS_MAX", 5)
    # DOMAIN.md, Terms and Risk lists.
    registry_renewal_window_months: int = _setting("REGISTRY_RENEWAL_WINDOW_MONTHS", 6)
    registry_annual_report_deadline: str = _setting("REGISTRY_ANNUAL_REPORT_DEADLINE", "05-31",
                                                    help="MM-DD of year Y+1 by which the report for Y is due")
    registry_escalation_years: int = _setting("REGISTRY_ESCALATION_YEARS", 2,
                                              help="an unfulfilled abnormal flag becomes serious after this")
    registry_officer_flag_expiry_months: int = _setting("REGISTRY_OFFICER_FLAG_EXPIRY_MONTHS", 6)
    registry_serious_clear_years: int = _setting("REGISTRY_SERIOUS_CLEAR_YEARS", 2)
    # The daily sweep: the worker checks this often whether today's sweep has run, and runs it after this
    # Shanghai time of day.
    registry_sweep_check_seconds: float = _setting("REGISTRY_SWEEP_CHECK_SECONDS", 300.0)
    registry_sweep_time: str = _setting("REGISTRY_SWEEP_TIME", "01:00", help="HH:MM, Asia/Shanghai")
    # The worker follows the organizations' change stream this often (events of new applications into the
    # outbox, changes into the search index).
    registry_search_poll_seconds: float = _setting("REGISTRY_SEARCH_POLL_SECONDS", 0.5)

    # --- evaluation settings ---
    # DOMAIN.md, Brand-project award: trimmed_mean drops one highest and one lowest from this many reviews on.
    evaluation_trim_min_reviews: int = _setting("EVALUATION_TRIM_MIN_REVIEWS", 5)
    # A project with fewer reviews than this share of reviewers_per_project (rounded up) is unranked.
    evaluation_min_reviews_share: float = _setting("EVALUATION_MIN_REVIEWS_SHARE", 0.5)
    # Results flag reviewers' disagreement when a project's reviews have at least this population sd (0..100).
    evaluation_disagreement_sd: float = _setting("EVALUATION_DISAGREEMENT_SD", 15.0)

    # --- fund and park settings ---
    # Who funds the grants, as the 360Giving export names it (production: `CN-USCI-<the bureau's USCC>`).
    fund_funder_name: str = _setting("FUND_FUNDER_NAME", "上海市浦东新区民政局")
    fund_funder_org_id: str = _setting("FUND_FUNDER_ORG_ID", "socorg-funder-pudong-civil-affairs")
    fund_grant_id_prefix: str = _setting("FUND_GRANT_ID_PREFIX", "360G-socorg-pudong",
                                         help="prefix of grant ids in the 360Giving export")
    # Tranche percentages of a grant created from an award (comma-separated, summing to 100).
    fund_award_tranches: str = _setting("FUND_AWARD_TRANCHES", "100")
    # How often the worker re-checks held disbursements whose organization's risk is back to none.
    fund_hold_sweep_seconds: float = _setting("FUND_HOLD_SWEEP_SECONDS", 60.0)
    park_min_years: int = _setting("PARK_MIN_YEARS", 1)
    park_max_years: int = _setting("PARK_MAX_YEARS", 5)
    park_ending_soon_days: int = _setting("PARK_ENDING_SOON_DAYS", 90,
                                          help="occupancy lists residents whose term ends within this many days")

    # --- portal settings ---
    # The web portal (services/portal) talks to the services over HTTP only, with the signed-in user's token.
    portal_port: int = _setting("PORTAL_PORT", 8000)
    registry_url: str = _setting("REGISTRY_URL", "http://127.0.0.1:8001", help="registry base URL, as the portal calls it")
    evaluation_url: str = _setting("EVALUATION_URL", "http://127.0.0.1:8002",
                                   help="evaluation base URL, as the portal calls it")
    fund_url: str = _setting("FUND_URL", "http://127.0.0.1:8003", help="fund base URL, as the portal calls it")
    portal_timeout_seconds: float = _setting("PORTAL_TIMEOUT_SECONDS", 10.0,
                                             help="how long the portal waits for a service before showing it as down")
    # dev: a sign-in page that picks role and name (the portal signs the token); oidc: an identity provider.
    auth_mode: str = _setting("SOCORG_AUTH_MODE", "dev", help="dev | oidc (the portal's sign-in)")
    # Signs the portal's session cookie; the portal refuses the default or a short key in production.
    portal_secret_key: str = _setting("PORTAL_SECRET_KEY", "socorg-portal-local-development-key-change-me",
                                      secret=True)
    oidc_issuer: str = _setting("OIDC_ISSUER", "", help="the identity provider's issuer URL (oidc mode)")
    oidc_client_id: str = _setting("OIDC_CLIENT_ID", "")
    oidc_client_secret: str = _setting("OIDC_CLIENT_SECRET", "", secret=True)
    oidc_redirect_url: str = _setting("OIDC_REDIRECT_URL", "", help="the portal's /auth/callback URL as users reach it")
    oidc_role_claim: str = _setting("OIDC_ROLE_CLAIM", "socorg_role",
                                    help="ID-token claim carrying applicant | reviewer | officer")
    oidc_org_claim: str = _setting("OIDC_ORG_CLAIM", "socorg_org", help="ID-token claim carrying an applicant's org id")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        environ = os.environ if environ is None else environ
        values = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f.metadata["env"])
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f, raw)
        values.update(overrides)
        settings = cls(**values)
        settings.validate(environ)
        return settings

    @property
    def production(self) -> bool:
        return self.env == PRODUCTION

    def validate(self, environ: Mapping[str, str] | None = None) -> None:
        """In production every required setting must be given explicitly and no secret may keep its default."""
        if not self.production:
            return
        environ = os.environ if environ is None else environ
        missing = [
            f.metadata["env"]
            for f in dataclasses.fields(self)
            if f.metadata["required_in_production"] and not environ.get(f.metadata["env"])
        ]
        if missing:
            raise SettingsError(f"production mode needs these settings: {', '.join(missing)}")
        if self.jwt_secret == DEFAULT_JWT_SECRET or len(self.jwt_secret) < 32:
            raise SettingsError(
                "production mode refuses the default or a short SOCORG_JWT_SECRET (use at least 32 random characters)"
            )

    def topic(self, service: str) -> str:
        """The topic `service` publishes to (CONTRACT.md), within this deployment's namespace."""
        from shared.events import TOPICS

        return self.kafka_namespace + TOPICS[service]

    def consumer_group(self, service: str) -> str:
        return f"{self.kafka_namespace}socorg-{service}"

    def port_of(self, service: str) -> int:
        return getattr(self, f"{service}_port")

    def db_of(self, service: str) -> str:
        return getattr(self, f"{service}_db")


def setting_names() -> list[str]:
    """The environment variable of every setting, for deploy checks and documentation."""
    return [f.metadata["env"] for f in dataclasses.fields(Settings)]


def _parse(f: dataclasses.Field, raw: str):
    kind = type(f.default)
    try:
        if kind is bool:
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
    except ValueError:
        raise SettingsError(f"{f.metadata['env']} must be a {kind.__name__}, got {raw!r}") from None
    return raw
