from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("screening", "0024_reading_policies"),
    ]

    operations = [
        migrations.AddField(
            model_name="readersettings",
            name="hanging_protocol",
            field=models.CharField(
                choices=[
                    ("row", "1×4"),
                    ("cc", "CC pair"),
                    ("mlo", "MLO pair"),
                    ("prior", "Current and prior"),
                    ("single", "Single film"),
                ],
                default="row",
                help_text="The hanging protocol the case page opens in.",
                max_length=8,
            ),
        ),
    ]
