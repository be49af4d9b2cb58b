"""CloudFormation templates for a federation on AWS: one per data owner, one for the server.

The data owner's stack holds everything a site needs and nothing the federation can misuse:

- a bucket (encrypted with the site's KMS key when given, else S3's; public access blocked;
  TLS only) laid out as ``data/<channel>/``,
  ``identity/`` (the site's client certificate and key), ``code/`` (uploads of the
  federation's code, content-addressed), ``output/`` (``model.tar.gz``) and ``checkpoints/``;
- the execution role the training job runs as (SageMaker may assume it): read ``data/``,
  ``identity/`` and ``code/``, write ``output/`` and ``checkpoints/``, write its logs, pull
  the image from the site's own repository, and the network interfaces a job in a VPC needs;
- the launch role the federation assumes: trusted only by the federation's account, and only
  with the ``ExternalId`` the owner chose (the confused-deputy guard); it may create,
  describe and stop training jobs named ``fl-*``, tag them, pass the one execution role to
  SageMaker, upload under ``code/`` and read ``output/``;
- an image repository for the training image.

The server's stack holds the orchestrator's role (an EC2 instance profile) allowed to assume
the data owners' launch roles and nothing else, and the security group that lets the sites'
networks reach the federation server's port.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["data_owner_template", "server_template", "write_templates", "TEMPLATE_FILES"]

TEMPLATE_FILES = ("data-owner.json", "federation-server.json")
JOB_PREFIX = "fl-"
_SUB = "Fn::Sub"


def _sub(text: str) -> dict[str, str]:
    return {_SUB: text}


def _policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def _allow(sid: str, actions: list[str], resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resource, **extra}


def _bucket_objects(prefix: str) -> dict[str, str]:
    return _sub(f"arn:${{AWS::Partition}}:s3:::${{DataBucket}}/{prefix}*")


def _with_key(actions: list[str]) -> dict[str, Any]:
    """A statement on the site's KMS key when the stack names one, else none."""
    return {"Fn::If": ["HasKmsKey", _allow("SiteKey", actions, {"Ref": "KmsKeyArn"}),
                       {"Ref": "AWS::NoValue"}]}


def data_owner_template() -> dict[str, Any]:
    """The data owner's stack: bucket, execution role, launch role, image repository."""
    training_jobs = _sub("arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:"
                         f"training-job/{JOB_PREFIX}*")
    bucket = _sub("arn:${AWS::Partition}:s3:::${DataBucket}")
    execution = _policy(
        _allow("ReadInputs", ["s3:GetObject"],
               [_bucket_objects("data/"), _bucket_objects("identity/"), _bucket_objects("code/")]),
        _allow("ListInputs", ["s3:ListBucket"], bucket),
        _allow("WriteOutputs", ["s3:PutObject", "s3:GetObject"],
               [_bucket_objects("output/"), _bucket_objects("checkpoints/")]),
        _allow("WriteLogs", ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                             "logs:DescribeLogStreams"],
               _sub("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
                    "/aws/sagemaker/TrainingJobs:*")),
        _allow("PullImage", ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                             "ecr:BatchCheckLayerAvailability"],
               {"Fn::GetAtt": ["ImageRepository", "Arn"]}),
        _allow("EcrLogin", ["ecr:GetAuthorizationToken"], "*"),
        _allow("JobNetworkInterfaces", [
            "ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission",
            "ec2:DeleteNetworkInterface", "ec2:DeleteNetworkInterfacePermission",
            "ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs", "ec2:DescribeDhcpOptions",
            "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups"], "*"),
        _with_key(["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]),
    )
    launch = _policy(
        _allow("TrainingJobs", ["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob",
                                "sagemaker:StopTrainingJob", "sagemaker:AddTags"],
               training_jobs),
        _allow("PassExecutionRole", ["iam:PassRole"],
               {"Fn::GetAtt": ["ExecutionRole", "Arn"]},
               Condition={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}),
        _allow("UploadCode", ["s3:PutObject", "s3:GetObject"], _bucket_objects("code/")),
        _allow("ReadModels", ["s3:GetObject"], _bucket_objects("output/")),
        # CreateTrainingJob with VolumeKmsKeyId needs a grant from its caller.
        _with_key(["kms:CreateGrant", "kms:DescribeKey", "kms:Decrypt", "kms:Encrypt",
                   "kms:GenerateDataKey"]),
    )
    trust = _policy({
        "Effect": "Allow",
        "Principal": {"AWS": _sub("arn:${AWS::Partition}:iam::${FederationAccountId}:root")},
        "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
        "Condition": {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}},
    })
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "fedsilo data owner: a site's bucket, roles and image repository",
        "Parameters": {
            "SiteName": {"Type": "String", "AllowedPattern": "[a-z0-9][a-z0-9-]{0,30}",
                         "Description": "The site's name (lower case, in resource names)"},
            "FederationAccountId": {"Type": "String", "AllowedPattern": "[0-9]{12}",
                                    "Description": "The account that runs the federation"},
            "ExternalId": {"Type": "String", "NoEcho": True, "MinLength": 2,
                           "MaxLength": 1224, "AllowedPattern": "[\\w+=,.@:/-]+",
                           "Description": "The secret the federation must send to assume "
                                          "the launch role"},
            "LaunchRoleName": {"Type": "String", "Default": "FL-kickoff-client-job"},
            "KmsKeyArn": {"Type": "String", "Default": "",
                          "Description": "The site's KMS key for the bucket, uploads, job "
                                         "volumes and models (empty: S3-managed keys)"},
        },
        "Conditions": {"HasKmsKey": {"Fn::Not": [{"Fn::Equals": [{"Ref": "KmsKeyArn"}, ""]}]}},
        "Resources": {
            "DataBucket": {
                "Type": "AWS::S3::Bucket",
                "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain",
                "Properties": {
                    "BucketName": _sub("fedsilo-${SiteName}-${AWS::AccountId}-${AWS::Region}"),
                    "BucketEncryption": {"ServerSideEncryptionConfiguration": [
                        {"ServerSideEncryptionByDefault": {"Fn::If": [
                            "HasKmsKey",
                            {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Ref": "KmsKeyArn"}},
                            {"SSEAlgorithm": "AES256"}]}}]},
                    "PublicAccessBlockConfiguration": {
                        "BlockPublicAcls": True, "BlockPublicPolicy": True,
                        "IgnorePublicAcls": True, "RestrictPublicBuckets": True},
                    "VersioningConfiguration": {"Status": "Enabled"},
                },
            },
            "DataBucketPolicy": {
                "Type": "AWS::S3::BucketPolicy",
                "Properties": {"Bucket": {"Ref": "DataBucket"}, "PolicyDocument": _policy({
                    "Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                    "Resource": [bucket, _bucket_objects("")],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}}})},
            },
            "ImageRepository": {
                "Type": "AWS::ECR::Repository",
                "Properties": {"RepositoryName": _sub("fedsilo-${SiteName}"),
                               "ImageScanningConfiguration": {"ScanOnPush": True}},
            },
            "ExecutionRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": _sub("FL-execution-${SiteName}"),
                    "AssumeRolePolicyDocument": _policy({
                        "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
                        "Action": "sts:AssumeRole"}),
                    "Policies": [{"PolicyName": "fedsilo-training-job",
                                  "PolicyDocument": execution}],
                },
            },
            "LaunchRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": {"Ref": "LaunchRoleName"},
                    "MaxSessionDuration": 43200,
                    "AssumeRolePolicyDocument": trust,
                    "Policies": [{"PolicyName": "FL-sagemaker-actions",
                                  "PolicyDocument": launch}],
                },
            },
        },
        "Outputs": {
            "LaunchRoleArn": {"Value": {"Fn::GetAtt": ["LaunchRole", "Arn"]}},
            "ExecutionRoleArn": {"Value": {"Fn::GetAtt": ["ExecutionRole", "Arn"]}},
            "BucketName": {"Value": {"Ref": "DataBucket"}},
            "ImageRepositoryUri": {"Value": {"Fn::GetAtt": ["ImageRepository",
                                                            "RepositoryUri"]}},
        },
    }


def server_template() -> dict[str, Any]:
    """The federation server's stack: the orchestrator's role and the server's firewall."""
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "fedsilo federation server: orchestrator role and server security group",
        "Parameters": {
            "LaunchRoleArns": {"Type": "CommaDelimitedList",
                               "Description": "The data owners' launch role ARNs"},
            "VpcId": {"Type": "AWS::EC2::VPC::Id"},
            "ServerPort": {"Type": "Number", "Default": 8080, "MinValue": 1, "MaxValue": 65535},
            "SiteCidr": {"Type": "String", "AllowedPattern": "[0-9./]+",
                         "Description": "The network the sites' jobs connect from"},
            "OrchestratorRoleName": {"Type": "String", "Default": "fedsilo-orchestrator"},
        },
        "Resources": {
            "OrchestratorRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": {"Ref": "OrchestratorRoleName"},
                    "AssumeRolePolicyDocument": _policy({
                        "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                        "Action": "sts:AssumeRole"}),
                    "Policies": [{"PolicyName": "assume-launch-roles", "PolicyDocument": _policy(
                        _allow("AssumeLaunchRoles", ["sts:AssumeRole", "sts:TagSession",
                                                     "sts:SetSourceIdentity"],
                               {"Ref": "LaunchRoleArns"}))}],
                },
            },
            "OrchestratorProfile": {
                "Type": "AWS::IAM::InstanceProfile",
                "Properties": {"Roles": [{"Ref": "OrchestratorRole"}]},
            },
            "ServerSecurityGroup": {
                "Type": "AWS::EC2::SecurityGroup",
                "Properties": {
                    "GroupDescription": "fedsilo federation server: the sites jobs dial in",
                    "VpcId": {"Ref": "VpcId"},
                    "SecurityGroupIngress": [{
                        "IpProtocol": "tcp", "FromPort": {"Ref": "ServerPort"},
                        "ToPort": {"Ref": "ServerPort"}, "CidrIp": {"Ref": "SiteCidr"},
                        "Description": "gRPC over TLS from the sites"}],
                },
            },
        },
        "Outputs": {
            "OrchestratorRoleArn": {"Value": {"Fn::GetAtt": ["OrchestratorRole", "Arn"]}},
            "InstanceProfile": {"Value": {"Ref": "OrchestratorProfile"}},
            "SecurityGroupId": {"Value": {"Fn::GetAtt": ["ServerSecurityGroup", "GroupId"]}},
        },
    }


def write_templates(directory: Path) -> list[Path]:
    """Write both templates as JSON into ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, template in zip(TEMPLATE_FILES, (data_owner_template(), server_template()),
                              strict=True):
        path = directory / name
        path.write_text(json.dumps(template, indent=2) + "\n")
        paths.append(path)
    return paths
