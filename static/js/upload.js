// Upload page: preview the chosen photo in Cropper.js and send the crop box (in the photo's own
// upright pixels) with the form; the server applies it. Without JavaScript the form still works.
(function () {
  "use strict";
  var input = document.getElementById("id_image");
  var panel = document.getElementById("crop-panel");
  var img = document.getElementById("crop-image");
  var form = document.getElementById("upload-form");
  var fields = ["x", "y", "w", "h"].map(function (k) { return document.getElementById("id_crop_" + k); });
  var cropper = null;
  var objectUrl = null;

  function clearBox() { fields.forEach(function (f) { f.value = ""; }); }

  input.addEventListener("change", function () {
    if (cropper) { cropper.destroy(); cropper = null; }
    if (objectUrl) { URL.revokeObjectURL(objectUrl); objectUrl = null; }
    clearBox();
    var file = input.files && input.files[0];
    if (!file || !/^image\/(jpeg|png|webp)$/.test(file.type) || typeof Cropper === "undefined") {
      panel.hidden = true;
      return;
    }
    objectUrl = URL.createObjectURL(file);
    img.src = objectUrl;
    panel.hidden = false;
    cropper = new Cropper(img, {
      viewMode: 1, autoCropArea: 1, responsive: true, checkOrientation: true, background: false,
      crop: function (event) {
        var d = event.detail;
        var data = [d.x, d.y, d.width, d.height];
        fields.forEach(function (f, i) { f.value = Math.round(data[i]); });
      }
    });
  });

  document.getElementById("crop-reset").addEventListener("click", function () { if (cropper) cropper.reset(); });

  form.addEventListener("submit", function () {
    var button = document.getElementById("upload-submit");
    button.disabled = true;
    document.getElementById("upload-status").textContent = "Uploading and looking for the face…";
  });
})();
