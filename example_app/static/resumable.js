// The "large file" page: Uppy's tus plugin sends the file in chunks and resumes after a
// drop; Uppy's status bar shows the progress. Uppy's bundle sets window.Uppy.
(function () {
  "use strict";

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("large-form");
    var Uppy = window.Uppy;
    if (!form || !Uppy || !Uppy.Uppy || !Uppy.Tus || !Uppy.StatusBar) return;

    var input = document.getElementById("large-file");
    var status = document.getElementById("large-status");
    var result = document.getElementById("large-result");
    var link = document.getElementById("large-link");
    var button = document.getElementById("large-button");

    var uppy = new Uppy.Uppy({
      autoProceed: false,
      restrictions: {
        maxNumberOfFiles: 1,
        maxFileSize: parseInt(form.dataset.maxBytes, 10),
      },
    })
      .use(Uppy.StatusBar, {
        target: "#large-progress",
        hideUploadButton: true,
        hideAfterFinish: false,
        showProgressDetails: true,
      })
      .use(Uppy.Tus, {
        endpoint: form.dataset.endpoint,
        chunkSize: parseInt(form.dataset.chunkSize, 10),
        retryDelays: [0, 300, 1000, 3000, 5000],
        // The server reads "filename" and "filetype"; the plugin copies them from these.
        allowedMetaFields: ["name", "type"],
        removeFingerprintOnSuccess: true,
      });

    uppy.on("upload-success", function (file, response) {
      // The server names the saved file on its answer to the last PATCH.
      var xhr = response && response.body && response.body.xhr;
      var savedAt = xhr ? xhr.getResponseHeader("Flask-Store-File") : null;
      status.textContent = "Uploaded " + file.name + ".";
      if (savedAt) {
        link.href = savedAt;
        link.textContent = file.name;
        result.hidden = false;
      }
    });
    uppy.on("upload-error", function (file, error) {
      status.textContent = "The upload failed: " + error.message;
    });
    uppy.on("restriction-failed", function (file, error) {
      status.textContent = error.message;
    });
    uppy.on("cancel-all", function () {
      // The status bar's cancel button (the submit handler's cancelAll() is overwritten next).
      button.disabled = false;
      status.textContent = "The upload was cancelled.";
    });

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var file = input.files[0];
      if (!file) {
        status.textContent = "Choose a file first.";
        return;
      }
      // One file at a time: forget the last one (a failed upload of the same file still
      // resumes, from the offset tus remembered for it).
      uppy.cancelAll();
      result.hidden = true;
      try {
        uppy.addFile({ name: file.name, type: file.type, data: file, source: "Local" });
      } catch (error) {
        status.textContent = error.message;
        return;
      }
      button.disabled = true;
      status.textContent = "Uploading " + file.name + "…";
      uppy.upload().then(
        function () {
          button.disabled = false;
        },
        function (error) {
          button.disabled = false;
          status.textContent = "The upload failed: " + error.message;
        }
      );
    });
  });
})();
