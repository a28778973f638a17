"""The endpoint's config.yaml: the model (model.py), its value types (values.py), the
options Parsl's classes take (parsl_options.py), and reading a file (loading.py)."""

from .loading import ConfigError, ConfigProblem, load_config, parse_config, parse_manager_config, read_config_text
from .model import (
    ENGINE_TYPES,
    EndpointConfig,
    EngineConfig,
    GlobusComputeEngineConfig,
    GlobusMPIEngineConfig,
    JobStatusConfig,
    ManagerConfig,
    ProcessPoolEngineConfig,
    ProviderConfig,
    ThreadPoolEngineConfig,
    default_config_text,
)
from .values import ConfigValueError

__all__ = [
    "ENGINE_TYPES", "ConfigError", "ConfigProblem", "ConfigValueError", "EndpointConfig", "EngineConfig",
    "GlobusComputeEngineConfig", "GlobusMPIEngineConfig", "JobStatusConfig", "ProcessPoolEngineConfig",
    "ProviderConfig",
    "ThreadPoolEngineConfig", "default_config_text", "load_config", "parse_config", "ManagerConfig",
    "parse_manager_config", "read_config_text",
]
