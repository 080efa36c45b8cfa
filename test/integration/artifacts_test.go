package integration

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
	"github.com/pnsflow/pnsflow/internal/podspec"
	. "github.com/pnsflow/pnsflow/internal/testutil"
)

var _ = Describe("A StepRun that stores artifacts", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace(nil) })

	withArtifact := func(sr *v1alpha1.StepRun, repo string) *v1alpha1.StepRun {
		sr.Spec.Outputs = &v1alpha1.Outputs{Artifacts: []v1alpha1.OutputArtifact{{Name: "out", Path: "/work/out"}}}
		if repo != "" {
			sr.Spec.ArtifactRepositoryRef = &corev1.LocalObjectReference{Name: repo}
		}
		return sr
	}
	noPod := func(sr *v1alpha1.StepRun) {
		pod := &corev1.Pod{}
		ExpectWithOffset(1, k8s.Get(ctx, key(ns, podspec.PodName(sr.Name)), pod)).NotTo(Succeed(), "a Pod was made")
	}

	It("ends Error/ArtifactRepositoryUnavailable before any Pod exists when no repository is configured", func() {
		sr := create(withArtifact(MakeStepRun("norepo", ns).Obj(), ""))
		Eventually(statusOf(sr)).Should(ended(v1alpha1.StepRunError, v1alpha1.ReasonArtifactRepositoryUnavailable))
		Expect(statusOf(sr)(Default).Message).To(ContainSubstring("no artifact repository is configured"))
		noPod(sr)
	})

	It("ends Error/ArtifactRepositoryUnavailable naming the ConfigMap's mistake", func() {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "repo", Namespace: ns},
			Data: map[string]string{"endpoint": "s3:8333", "bucket": "b", "secretName": "creds", "acessKey": "typo"}}
		Expect(k8s.Create(ctx, cm)).To(Succeed())
		sr := create(withArtifact(MakeStepRun("badrepo", ns).Obj(), "repo"))
		Eventually(statusOf(sr)).Should(ended(v1alpha1.StepRunError, v1alpha1.ReasonArtifactRepositoryUnavailable))
		Expect(statusOf(sr)(Default).Message).To(ContainSubstring("unknown keys acessKey"))
		noPod(sr)
	})

	It("gives the executor, and only the executor, the repository and its credentials", func() {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "repo", Namespace: ns},
			Data: map[string]string{"endpoint": "http://s3.example:8333", "bucket": "b", "secretName": "creds", "keyPrefix": "runs"}}
		Expect(k8s.Create(ctx, cm)).To(Succeed())
		sr := create(withArtifact(MakeStepRun("repo", ns).Obj(), "repo"))
		pod := pending(sr)
		var cfg executorconfig.Config
		var refs []string
		for _, e := range pod.Spec.InitContainers[0].Env {
			switch {
			case e.Name == executorconfig.ConfigEnv:
				var err error
				cfg, err = executorconfig.Decode(e.Value)
				Expect(err).NotTo(HaveOccurred())
			case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
				refs = append(refs, e.Name+"="+e.ValueFrom.SecretKeyRef.Name+"/"+e.ValueFrom.SecretKeyRef.Key)
			}
		}
		Expect(refs).To(ConsistOf("AWS_ACCESS_KEY_ID=creds/accessKey", "AWS_SECRET_ACCESS_KEY=creds/secretKey"))
		Expect(cfg.Repository).To(HaveValue(Equal(executorconfig.Repository{
			Endpoint: "s3.example:8333", Bucket: "b", Region: "us-east-1", Insecure: true, PathStyle: true, KeyPrefix: "runs", SecretName: "creds"})))
		Expect(cfg.Artifacts).To(Equal([]executorconfig.Artifact{{Name: "out", Path: "/work/out", Key: "runs/" + ns + "/repo/out"}}))
		for _, e := range pod.Spec.Containers[0].Env {
			Expect(e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil).To(BeTrue(), "main has the secret env %s", e.Name)
		}
	})

	Describe("that loads input artifacts", func() {
		withInput := func(sr *v1alpha1.StepRun, key string) *v1alpha1.StepRun {
			sr.Spec.Inputs = &v1alpha1.Inputs{Artifacts: []v1alpha1.InputArtifact{{Name: "in", Path: "/work/in", Key: key}}}
			sr.Spec.ArtifactRepositoryRef = &corev1.LocalObjectReference{Name: "repo"}
			return sr
		}
		BeforeEach(func() {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "repo", Namespace: ns},
				Data: map[string]string{"endpoint": "http://s3.example:8333", "bucket": "b", "secretName": "creds", "keyPrefix": "runs"}}
			Expect(k8s.Create(ctx, cm)).To(Succeed())
		})

		It("refuses a key outside the run's namespace with Error/InvalidSpec before any Pod exists", func() {
			sr := create(withInput(MakeStepRun("elsewhere", ns).Obj(), "runs/other-team/run/out"))
			Eventually(statusOf(sr)).Should(ended(v1alpha1.StepRunError, v1alpha1.ReasonInvalidSpec))
			Expect(statusOf(sr)(Default).Message).To(ContainSubstring(`must start with "runs/` + ns + `/"`))
			noPod(sr)
		})

		It("refuses a key that climbs out of its prefix in the CRD schema", func() {
			sr := withInput(MakeStepRun("climb", ns).Obj(), "runs/"+ns+"/../other/x")
			err := k8s.Create(ctx, sr)
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring("spec.inputs.artifacts[0].key"))
			Expect(err.Error()).To(ContainSubstring("should match"))
		})

		It("loads before the executor starts, and ends Error with the loader's reason when an input is missing", func() {
			sr := create(withInput(MakeStepRun("missing", ns).Obj(), "runs/"+ns+"/prev/out"))
			pod := pending(sr)
			Expect(pod.Spec.InitContainers).To(HaveLen(2))
			Expect(pod.Spec.InitContainers[0].Name).To(Equal(executorconfig.LoaderContainer))
			msg := `{"reason":"ArtifactNotFound","message":"input artifact \"in\": key runs/` + ns + `/prev/out does not exist"}`
			Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
				p := &corev1.Pod{}
				if err := k8s.Get(ctx, key(ns, pod.Name), p); err != nil {
					return err
				}
				p.Status.Phase = corev1.PodFailed
				failed := exited(1, "Error")
				failed.Terminated.Message = msg
				p.Status.InitContainerStatuses = []corev1.ContainerStatus{
					{Name: executorconfig.LoaderContainer, Image: executorImage, State: failed},
					{Name: "pns-executor", Image: executorImage, State: waiting("PodInitializing", "")},
				}
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "main", Image: sr.Spec.Image, State: waiting("PodInitializing", "")}}
				return k8s.Status().Update(ctx, p)
			})).To(Succeed())
			Eventually(statusOf(sr)).Should(ended(v1alpha1.StepRunError, v1alpha1.ReasonArtifactNotFound))
			got := statusOf(sr)(Default)
			Expect(got.Message).To(Equal(`input artifact "in": key runs/` + ns + `/prev/out does not exist`))
			Expect(meta.IsStatusConditionFalse(got.Conditions, v1alpha1.ConditionMainStarted)).To(BeTrue(), "main never started: safe to retry")
		})
	})
})
