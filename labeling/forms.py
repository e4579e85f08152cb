from django import forms

from labeling.models import Gender, PhotoReport


class UploadForm(forms.Form):
    image = forms.FileField(
        label="Photo", help_text="JPEG, PNG or WebP, up to 10 MB. One person's face must be visible."
    )
    real_age = forms.IntegerField(
        label="Real age of the person in the photo",
        min_value=0,
        max_value=100,
        help_text="Their age in whole years when the photo was taken (0-100).",
    )
    date_taken = forms.DateField(
        label="Date taken (optional)", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    show_real_age = forms.BooleanField(
        label="Show the real age to players after they guess", required=False, initial=True
    )
    consent = forms.BooleanField(
        label="Required: I may share this photo (the person shown, or their guardian, agrees), and other "
        "players may see its face crop and guess the age.",
        required=False,
    )
    # Opt-in scopes, unchecked by default; the owner can change them later on "My data".
    consent_export = forms.BooleanField(
        label="Optional: it may go into research datasets that scientists download (face crop, photo, ages).",
        required=False, initial=False,
    )
    consent_training = forms.BooleanField(
        label="Optional: it may be used to train this site's age-estimation models.",
        required=False, initial=False,
    )
    crop_x = forms.FloatField(required=False, widget=forms.HiddenInput)
    crop_y = forms.FloatField(required=False, widget=forms.HiddenInput)
    crop_w = forms.FloatField(required=False, widget=forms.HiddenInput)
    crop_h = forms.FloatField(required=False, widget=forms.HiddenInput)

    def clean(self):
        data = super().clean()
        if not data.get("consent") and "consent" not in self.errors:
            self.add_error("consent", "Confirm that you may share this photo and that players may guess its age "
                                      "before uploading.")
        parts = [data.get(k) for k in ("crop_x", "crop_y", "crop_w", "crop_h")]
        if any(p is not None for p in parts) and not all(p is not None for p in parts):
            self.add_error(None, "The crop box is incomplete: crop again or upload without cropping.")
        return data


class ReportForm(forms.Form):
    reason = forms.ChoiceField(choices=PhotoReport.Reason.choices)
    comment = forms.CharField(max_length=500, required=False, widget=forms.Textarea(attrs={"rows": 2}))


class ProfileForm(forms.Form):
    birth_year = forms.IntegerField(label="Birth year (optional)", required=False, min_value=1900, max_value=2100)
    gender = forms.ChoiceField(label="Gender (optional)", choices=Gender.choices, required=False)
