from django.apps import AppConfig


class MetricsExporterConfig(AppConfig):
    name = "metrics_exporter"
    verbose_name = "Metrics exporter"
