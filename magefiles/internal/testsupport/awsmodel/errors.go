package awsmodel

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"net/http"
)

// How each AWS protocol answers an error, so the SDK decodes the code into a
// smithy.APIError exactly as from AWS.

// ThrottleError is each service's throttling answer as AWS sends it.
func ThrottleError(service string) (code string, status int) {
	switch service {
	case "ec2":
		return "RequestLimitExceeded", http.StatusServiceUnavailable
	case "route53", "sts":
		return "Throttling", http.StatusBadRequest
	default:
		return "ThrottlingException", http.StatusTooManyRequests
	}
}

// ServerErrorCode is each service's internal-error code.
func ServerErrorCode(service string) string {
	switch service {
	case "ec2", "route53", "sts":
		return "InternalError"
	default:
		return "InternalServerException"
	}
}

// WriteAPIError answers in the error format of the service's protocol, so
// the SDK decodes the code into a smithy.APIError exactly as from AWS.
func WriteAPIError(w http.ResponseWriter, service, code, message string, status int) {
	w.Header().Set("x-amzn-RequestId", NewRequestID())
	switch service {
	case "ec2":
		w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
		w.WriteHeader(status)
		_ = xml.NewEncoder(w).Encode(ec2ErrorResponse{
			Errors:    []ec2Error{{Code: code, Message: message}},
			RequestID: NewRequestID(),
		})
	case "route53", "sts":
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(status)
		_ = xml.NewEncoder(w).Encode(xmlErrorResponse{
			Error:     xmlError{Type: "Sender", Code: code, Message: message},
			RequestID: NewRequestID(),
		})
	default: // REST-JSON and JSON services (ebs)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Amzn-ErrorType", code)
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "Message": message})
	}
}

type ec2ErrorResponse struct {
	XMLName   xml.Name   `xml:"Response"`
	Errors    []ec2Error `xml:"Errors>Error"`
	RequestID string     `xml:"RequestID"`
}

type ec2Error struct {
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

type xmlErrorResponse struct {
	XMLName   xml.Name `xml:"ErrorResponse"`
	Error     xmlError `xml:"Error"`
	RequestID string   `xml:"RequestId"`
}

type xmlError struct {
	Type    string `xml:"Type"`
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

// NewRequestID is a request id as AWS sends one.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
