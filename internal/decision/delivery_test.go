package decision

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDeliveryIsAuditedAsWhatLeftToWhomAboutWhom(t *testing.T) {
	sink := &fakeKeepingSink{}
	c := &Core{Policy: &fakeReloadingPolicy{rev: "rev-7"}, Audit: sink, Now: time.Now}
	err := c.RecordDelivery(context.Background(), Delivery{API: "prior-auth", ClientID: "provider-org-a",
		Path: "Subscription/s1", Type: "event-notification", RequestID: "n1", Patients: []string{"member-01"},
		Status: 200, Outcome: "delivered", Bytes: 512})
	if err != nil {
		t.Fatal(err)
	}
	if len(sink.records) != 1 {
		t.Fatalf("%d records, want 1", len(sink.records))
	}
	r := sink.records[0]
	if r.Interaction != InteractionNotification || r.ClientID != "provider-org-a" || r.Path != "Subscription/s1" ||
		r.Status != 200 || r.Outcome != "delivered" || len(r.Patients) != 1 || r.Patients[0] != "member-01" ||
		r.PolicyRevision != "rev-7" || r.Reasons[0] != "subscription_event-notification" || r.Time.IsZero() {
		t.Errorf("record %+v", r)
	}
}

func TestDeliveryWhoseRecordFailsIsReportedSoItIsNotSent(t *testing.T) {
	c := &Core{Policy: &fakeReloadingPolicy{rev: "r"}, Audit: fakeFailingSink{err: errors.New("spool full")}, Now: time.Now}
	if err := c.RecordDelivery(context.Background(), Delivery{API: "prior-auth", Type: "handshake"}); err == nil {
		t.Fatal("a delivery whose audit record failed was reported as recorded")
	}
}
